"""Passwords never leak: every URL form SQLAlchemy masks badly or not at all, and text that quotes them."""

from __future__ import annotations

import pytest

from masbench.errors import MasbenchError
from masbench.store.urls import check_url, mask_url, scrub, secrets_of

# (URL, the masked form, the secret that must not survive: neither it nor its tail after an @ shows)
FORMS = [
    ("postgresql://u:hunter2@host/db", "postgresql://u:***@host/db", "hunter2"),
    ("postgresql+psycopg://u:p%40ss-word@host:5432/db", "postgresql+psycopg://u:***@host:5432/db", "p@ss-word"),
    # the three leaks: a password in the query, an unencoded @ in it, a URL that does not parse
    ("postgresql://u@host/db?password=hunter2&sslmode=require", "postgresql://u@host/db?password=***&sslmode=require",
     "hunter2"),
    ("postgresql://u:p@ss-word@host/db", "postgresql://u:***@host/db", "p@ss-word"),
    ("postgresql://u:p@ss@w@rd@host/db?application_name=x", "postgresql://u:***@host/db?application_name=x", "p@ss@w@rd"),
    ("postgresql//u:hunter2@host/db", "postgresql//u:***@host/db", "hunter2"),
    ("postgresql://u:hunter2@host:notaport/db", "postgresql://u:***@host:notaport/db", "hunter2"),
    ("mysql+pymysql://u:a:b:c@host/db", "mysql+pymysql://u:***@host/db", "a:b:c"),
    ("postgresql://u:pw@host/db?sslpassword=keypass1", "postgresql://u:***@host/db?sslpassword=***", "keypass1"),
    ("host=db.example user=u password=hunter2 dbname=runs", "host=db.example user=u password=*** dbname=runs",
     "hunter2"),
]
UNCHANGED = ["sqlite:///masbench.db", "sqlite:////tmp/x@y.db", "postgresql+psycopg://postgres@127.0.0.1:55433/postgres",
             "postgresql://host/db?sslmode=require", "not a url at all"]


@pytest.mark.parametrize("url, masked, secret", FORMS)
def test_every_form_is_masked(url, masked, secret):
    assert mask_url(url) == masked
    assert secret not in mask_url(url) and secret.rpartition("@")[2] not in mask_url(url)
    assert mask_url(mask_url(url)) == masked  # masking twice changes nothing more


@pytest.mark.parametrize("url", UNCHANGED)
def test_urls_without_secrets_are_left_as_they_are(url):
    assert mask_url(url) == url and secrets_of(url) == []


def test_the_old_masking_leaked_these_forms():
    """What SQLAlchemy's own masking (the store's before) shows for the three forms."""
    from sqlalchemy.engine import make_url

    assert "hunter2" in make_url("postgresql://u@host/db?password=hunter2").render_as_string(hide_password=True)
    assert "ss-word" in make_url("postgresql://u:p@ss-word@host/db").render_as_string(hide_password=True)


@pytest.mark.parametrize("url, _, secret", FORMS)
def test_scrub_removes_a_urls_secrets_from_a_traceback(url, _, secret):
    traceback = (f"Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
                 f"    create_engine('{url}')\nOperationalError: could not connect with {url} "
                 f"(password {secret!r} rejected)\n")
    cleaned = scrub(traceback, url)
    assert secret not in cleaned
    assert "Traceback (most recent call last)" in cleaned and "OperationalError" in cleaned


def test_scrub_masks_urls_it_was_not_told_about_and_keeps_short_words():
    text = "retrying postgresql://me:s3cret-pw@db/x after 'password=abc'; a pw is fine"
    cleaned = scrub(text)
    assert "s3cret-pw" not in cleaned and "abc" not in cleaned
    assert scrub("a pw is fine", "postgresql://u:pw@h/db") == "a pw is fine"  # a 2-letter secret is not bare-replaced


def test_a_drivers_message_about_the_misparsed_host_is_scrubbed():
    url = "postgresql://u:p@ss@127.0.0.1:1/db"
    message = "failed to resolve host 'ss@127.0.0.1': [Errno -2] Name or service not known"
    assert scrub(message, url) == "failed to resolve host '***@127.0.0.1': [Errno -2] Name or service not known"


def test_check_url_refuses_an_unencoded_at_and_names_the_fix():
    check_url("postgresql://u:p%40ss@host/db")
    check_url("sqlite:///a@b.db")
    with pytest.raises(MasbenchError, match="write it as %40") as error:
        check_url("postgresql://u:p@ss-word@host/db")
    assert "ss-word" not in str(error.value)


# --- the store uses it ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url, secret", [
    ("postgresql+psycopg://me@127.0.0.1:1/db?password=hunter2-secret", "hunter2-secret"),
    ("postgresql+psycopg://me:open-sesame@127.0.0.1:1/db", "open-sesame"),
])
def test_the_store_never_echoes_a_password(url, secret):
    from masbench.store import Store

    with pytest.raises(MasbenchError) as error:
        Store(url)
    assert secret not in str(error.value) and "cannot open database" in str(error.value)


def test_the_store_refuses_an_unencoded_at_before_connecting():
    from masbench.store import Store

    with pytest.raises(MasbenchError, match="write it as %40") as error:
        Store("postgresql+psycopg://me:p@ss-word@127.0.0.1:1/db")
    assert "ss-word" not in str(error.value)


def test_a_failed_runs_stored_traceback_is_scrubbed(tmp_path, monkeypatch):
    """An error that quotes the store's URL (a driver's message) is stored without the URL's secrets."""
    import masbench.sweep.units as cells
    from masbench.spec import RunSpec
    from masbench.store import Store
    from masbench.sweep import run_cell

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.url = "postgresql://me:swordfish-42@db.example/runs"  # as a driver would quote it

    def failing(*args, **kwargs):
        raise RuntimeError(f"lost the connection to {store.url}")

    monkeypatch.setattr(cells, "train", failing)
    outcome = run_cell(RunSpec(dataset="digits", model="mlp", epochs=1), store)
    assert outcome.status == "failed"
    error = store.get_run(outcome.spec.key).error
    assert "RuntimeError: lost the connection to postgresql://me:***@db.example/runs" in error
    assert "swordfish-42" not in error and "swordfish-42" not in outcome.message
