"""Cases that hold already (a sanity row of the table: the filled store reports)."""

from cases import Case

CASES = [
    Case("report-of-the-filled-store", ("report", "--format", "csv", "--db", "{db}"), output=("adam",)),
]
