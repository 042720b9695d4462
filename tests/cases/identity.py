"""Identity (issue 21.5): one optimizer is one cell however it is named; lambdas that are one number are refused
alike however written; a cell whose runs recorded other versions of a library or plugin is flagged, in every
format. The store's adam/mlp cell of ``report_fixtures.RUNS`` has completed seeds 0, 1, 2."""

import json

from cases import Case, Env

FLAG = "versions differ: torch 2.14.1/2.15.0"


def _versions(**by_seed: dict):
    """A setup that stores each seed's versions of the adam/mlp cell (``s0={"torch": "2.14.1"}``)."""

    def setup(env: Env) -> None:
        for seed, versions in by_seed.items():
            env.sql("UPDATE runs SET versions = :v WHERE optimizer = 'adam' AND model = 'mlp' AND seed = :s",
                    v=json.dumps(versions), s=int(seed.removeprefix("s")))

    return setup


TORCH = _versions(s0={"torch": "2.14.1", "python": "3.12.1"}, s1={"torch": "2.15.0", "python": "3.12.1"},
                  s2={"torch": "2.14.1", "python": "3.12.1"})


def _the_other_cells_are_not_flagged(env: Env) -> None:
    from masbench.report import cell_table, run_accuracies

    cells = cell_table(run_accuracies(env.store()))
    flagged = {row["name"]: row["flags"] for row in cells.to_dict("records") if "versions" in row["flags"]}
    assert flagged == {"adam[lr=0.01]": FLAG}, flagged


def _sweep(*args: str) -> tuple[str, ...]:
    return ("sweep", "--dataset", "digits", "--models", "mlp", "--epochs", "1", "--dry-run", "--db", "{db}", *args)


BENCHMARK_B = """\
benchmarks:
  b:
    dataset: digits
    models: [mlp]
    lambdas: "0.3"
    baselines: [adam]
    seeds: 3
    lr: 0.01
    epochs: 3
"""


def _benchmark_b(env: Env) -> None:
    (env.dir / "benchmarks.yaml").write_text(BENCHMARK_B)


CASES = [
    # --- versions: a cell whose completed runs differ in a recorded version is flagged, in every format --------
    Case("versions-differ-csv", ("report", "--format", "csv", "--db", "{db}"), setup=TORCH, output=(FLAG,),
         after=_the_other_cells_are_not_flagged),
    Case("versions-differ-markdown", ("report", "--format", "markdown", "--db", "{db}"), setup=TORCH,
         output=(f"| {FLAG} |",)),
    Case("versions-differ-json", ("report", "--format", "json", "--db", "{db}"), setup=TORCH,
         output=(f'"flags": "{FLAG}"',)),
    Case("versions-differ-latex", ("report", "--format", "latex", "--db", "{db}"), setup=TORCH,
         output=(r"$^\dagger$ Adam: versions differ: torch 2.14.1/2.15.0; MAS (0.3 / 0.7): 2/3 seeds;",)),
    Case("versions-differ-html", ("report", "--format", "html", "--db", "{db}"), setup=TORCH,
         output=(f'<td class="flags">{FLAG}</td>', "3 flagged</span> (incomplete, failed, diverged or of other versions)")),
    Case("versions-differ-rich", ("report", "--db", "{db}"), setup=TORCH, output=("versions differ",)),
    Case("versions-differ-leaderboard", ("report", "--leaderboard", "--format", "csv", "--db", "{db}"), setup=TORCH,
         output=(FLAG,)),
    Case("versions-differ-plugin-and-torch", ("report", "--format", "csv", "--db", "{db}"),
         setup=_versions(s0={"torch": "2.14.1", "masbench-demo": "0.1"}, s1={"torch": "2.15.0", "masbench-demo": "0.2"}),
         output=("versions differ: masbench-demo 0.1/0.2, torch 2.14.1/2.15.0",)),
    Case("versions-same-no-flag", ("report", "--format", "csv", "--db", "{db}"),
         setup=_versions(s0={"torch": "2.15.0"}, s1={"torch": "2.15.0"}, s2={"torch": "2.15.0"}),
         output=("adam[lr=0.01]",), absent=("versions differ",)),
    # Older runs recorded fewer names: a name only some runs record is no difference; key order is no difference.
    Case("versions-name-only-in-some-no-flag", ("report", "--format", "csv", "--db", "{db}"),
         setup=_versions(s0={"torch": "2.15.0"}, s1={"python": "3.12.1", "torch": "2.15.0", "timm": "1.0"},
                         s2={"timm": "1.0", "torch": "2.15.0"}),
         output=("adam[lr=0.01]",), absent=("versions differ",)),
    # Only the completed runs make the numbers: the diverged seed of mas 0.7 with another torch is no flag.
    Case("versions-differ-in-a-diverged-run-no-flag", ("report", "--format", "csv", "--db", "{db}"),
         setup=lambda env: [env.sql("UPDATE runs SET versions = :v WHERE optimizer = 'mas' AND lambda_adam = 0.7 "
                                    "AND seed = :s", v=json.dumps({"torch": t}), s=s)
                            for s, t in ((0, "2.15.0"), (1, "2.15.0"), (2, "2.14.1"))],
         output=("mas[lambda_adam=0.7",), absent=("versions differ",)),
    # --- one optimizer, one cell ------------------------------------------------------------------------------
    Case("baselines-adam-and-its-import-path", _sweep("--lambdas", "0.5", "--baselines", "adam,torch.optim:Adam"),
         error="Invalid baselines: 'adam' and 'torch.optim:Adam' are one optimizer, adam (give it once)",
         stores=False),
    Case("baselines-dotted-path-and-colon-path", _sweep("--lambdas", "0.5", "--baselines",
                                                        "torch.optim.SGD,torch.optim:SGD"),
         error="Invalid baselines: 'torch.optim.SGD' and 'torch.optim:SGD' are one optimizer, sgd (give it once)",
         stores=False),
    # torch.optim:Adam names the stored adam cell: its three completed seeds are found, nothing is to run.
    Case("import-path-plans-the-stored-adam-cell", ("sweep", "--benchmark", "b", "--benchmarks", "{dir}/benchmarks.yaml",
                                                    "--baselines", "torch.optim:Adam", "--dry-run",
                                                    "--db", "{db}"),
         setup=_benchmark_b, output=("6 runs: 5 completed, 1 to run",)),
    # A reading command's --optimizer resolves a path to the name the store holds, as run and sweep do (no import).
    Case("optimizer-filter-by-colon-path", ("runs", "--optimizer", "torch.optim:Adam", "--format", "csv",
                                            "--db", "{db}"),
         output=("adam[lr=0.01],0,90.0", "adam[lr=0.01],1,77.0"), absent=("sgd[", "mas[")),
    Case("optimizer-filter-by-dotted-path", ("report", "--leaderboard", "--optimizer", "torch.optim.Adam,sgd",
                                             "--format", "csv", "--db", "{db}"),
         output=("adam[lr=0.01],,5f7a9130d0bae7475681,1.0,0.0,,3,88.0,", "sgd[lr=0.01]"), absent=("mas[",)),
    Case("optimizer-filter-by-module-path", ("report", "--optimizer", "torch.optim.adam:Adam", "--model", "mlp",
                                             "--format", "csv", "--db", "{db}"),
         output=("adam[lr=0.01]",), absent=("sgd[", "mas[")),
    Case("optimizer-filter-not-a-path", ("runs", "--optimizer", "adam,torch..Adam", "--db", "{db}"),
         error="Invalid --optimizer 'torch..Adam': neither a name nor an import path package.module:Class"),
    # --- lambdas that are one number --------------------------------------------------------------------------
    Case("lambdas-0.3-and-0.30000000000000001", _sweep("--lambdas", "0.3,0.30000000000000001"),
         error="0.30000000000000001 is listed twice (0.3 and 0.30000000000000001 are the same number, 0.3; give "
               "each once)", stores=False),
    Case("lambdas-0.3-and-0.30", _sweep("--lambdas", "0.3,0.30"),
         error="0.30 is listed twice (0.3 and 0.30 are the same number, 0.3; give each once)", stores=False),
    Case("lambdas-0.3-and-3e-1", _sweep("--lambdas", "0.3,3e-1"),
         error="3e-1 is listed twice (0.3 and 3e-1 are the same number, 0.3; give each once)", stores=False),
    Case("lambdas-range-below-the-float-spacing", _sweep("--lambdas", "0.3..0.3000000000000001:1e-17"),
         error="its values 0.30000000000000000 and 0.30000000000000001 are the same number, 0.3", stores=False),
    Case("lambdas-range-and-list-in-one", _sweep("--lambdas", "0.3..0.7,0.5"),
         error="Invalid lambdas '0.3..0.7,0.5' (valid: START..END (step 0.1), START..END:STEP, or A,B,C",
         stores=False),
]
