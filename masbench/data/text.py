"""Text classification sets: CoLA and AG News (the paper's), and any ``csv:PATH`` file.

Offline, the raw files are read from ``DATA_DIR``; online, CoLA and AG News come
from the Hugging Face hub through ``datasets``. Each set is tokenised with the
model's tokenizer once and cached under ``DATA_DIR/cache``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from masbench.data.base import TextDataset, TextSplit, check_classes
from masbench.data.fetch import hub_online, load_pretrained
from masbench.errors import MasbenchError
from masbench.text.paths import check_file
from masbench.fileio import cached_payload
from masbench.text.numbers import is_digits
from masbench.text.shown import one_line


@dataclass
class RawText:
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    classes: list[str]
    source: str  # what the cache key is made of: file signatures or a hub name


def _file_signature(paths: list[Path]) -> str:
    """The token cache's key: the files' contents (SHA-256), never their mtimes.

    A file changed in place with its size and mtime kept (``touch -r``, ``mv``, an unzip) must not be
    served its old tokens: its run is a new cell (``data.identity``) and must train on the new text.
    """
    from masbench.data.identity import file_fingerprint

    return ";".join(f"{p.name}:{file_fingerprint(str(p))}" for p in paths)


def _find(data_dir: Path, folders: list[str], names: list[str]) -> list[Path] | None:
    for folder in folders:
        for sub in ("", "raw"):
            base = data_dir / folder / sub
            if all((base / n).is_file() for n in names):
                return [base / n for n in names]
    return None


def _read_table(path: Path, **kwargs):
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise MasbenchError(f"cannot parse {path}: {one_line(error, 200)}") from None


def _check_complete(frame, path: Path, columns, header_lines: int = 0) -> None:
    missing = frame[list(columns)].isna().any(axis=1)
    if missing.any():
        line = int(missing.idxmax()) + 1 + header_lines
        raise MasbenchError(
            f"{path}: line {line} lacks a value in column(s) {list(columns)} (a truncated or malformed file?)"
        )


COLA_CLASSES = ["unacceptable", "acceptable"]
AGNEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]


def raw_cola(data_dir: Path) -> RawText:
    """CoLA v1.1: train = in_domain_train.tsv, test = in_domain_dev.tsv (+ out_of_domain_dev.tsv): GLUE's validation."""
    train_files = _find(data_dir, ["cola", "CoLA", "cola_public"], ["in_domain_train.tsv"])
    test_files = _find(data_dir, ["cola", "CoLA", "cola_public"], ["in_domain_dev.tsv"])
    if train_files and test_files:
        out_of_domain = test_files[0].with_name("out_of_domain_dev.tsv")
        if out_of_domain.is_file():
            test_files.append(out_of_domain)

        def read(paths):
            texts, labels = [], []
            for path in paths:
                frame = _read_table(path, sep="\t", header=None, names=["source", "label", "original", "sentence"],
                                    quoting=3, dtype={"label": "Int64"})
                _check_complete(frame, path, ["label", "sentence"])
                texts += frame["sentence"].astype(str).tolist()
                labels += frame["label"].astype(int).tolist()
            return texts, labels

        train_texts, train_labels = read(train_files)
        test_texts, test_labels = read(test_files)
        return RawText(train_texts, train_labels, test_texts, test_labels, COLA_CLASSES,
                       _file_signature(train_files + test_files))
    if hub_online():
        return _from_hub("nyu-mll/glue", "cola", "sentence", "validation", COLA_CLASSES, data_dir)
    raise MasbenchError(
        f"CoLA not found: put CoLA v1.1's in_domain_train.tsv and in_domain_dev.tsv in {data_dir / 'cola'}/ "
        f"(https://nyu-mll.github.io/CoLA/), or run once with internet access"
    )


def raw_agnews(data_dir: Path) -> RawText:
    """AG News (Zhang et al. 2015, csv): class 1-4, title, description; text = title + ' ' + description."""
    train_files = _find(data_dir, ["ag_news", "agnews", "ag_news_csv"], ["train.csv"])
    test_files = _find(data_dir, ["ag_news", "agnews", "ag_news_csv"], ["test.csv"])
    if train_files and test_files:

        def read(path):
            frame = _read_table(path, header=None, names=["label", "title", "description"], dtype={"label": "Int64"})
            _check_complete(frame, path, ["label", "title"])
            bad = ~frame["label"].isin([1, 2, 3, 4])
            if bad.any():
                line = int(bad.idxmax()) + 1
                raise MasbenchError(f"{path}: line {line} has class {frame['label'][line - 1]!r} (valid: 1, 2, 3, 4)")
            texts = (frame["title"].astype(str) + " " + frame["description"].fillna("").astype(str)).tolist()
            return texts, (frame["label"].astype(int) - 1).tolist()

        train_texts, train_labels = read(train_files[0])
        test_texts, test_labels = read(test_files[0])
        return RawText(train_texts, train_labels, test_texts, test_labels, AGNEWS_CLASSES,
                       _file_signature(train_files + test_files))
    if hub_online():
        return _from_hub("fancyzhx/ag_news", None, "text", "test", AGNEWS_CLASSES, data_dir)
    missing = "train.csv and test.csv" if not (train_files or test_files) else ("train.csv" if not train_files else "test.csv")
    raise MasbenchError(
        f"AG News not found: put {missing} (the ag_news_csv release: class 1-4, title, description) in "
        f"{data_dir / 'ag_news'}/, or run once with internet access"
    )


def _from_hub(path: str, config: str | None, text_field: str, test_split: str, classes, data_dir: Path) -> RawText:
    import datasets

    sets = datasets.load_dataset(path, config, cache_dir=str(data_dir / "hf"))
    train, test = sets["train"], sets[test_split]
    return RawText(list(train[text_field]), list(train["label"]), list(test[text_field]), list(test["label"]),
                   classes, f"hub:{path}:{config}")


def _column(spec: str | None, default: str):
    value = default if spec is None else spec
    return int(value) if is_digits(str(value)) else value


def raw_csv(path: str, data_dir: Path, *, text_column: str | None, label_column: str | None,
            test_file: str | None, test_fraction: float) -> RawText:
    """A CSV/TSV file: columns by name (the file has a header) or by 0-based index (it has none)."""
    file = check_file(path, "CSV file")
    text_col, label_col = _column(text_column, "text"), _column(label_column, "label")
    by_index = isinstance(text_col, int) and isinstance(label_col, int)
    if isinstance(text_col, int) != isinstance(label_col, int):
        raise MasbenchError(
            f"--text-column {text_col!r} and --label-column {label_col!r}: give both as names or both as indices"
        )

    def read(p: Path):
        sep = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
        frame = _read_table(p, sep=sep, header=None if by_index else 0, dtype=str, keep_default_na=False,
                            na_values=[""])
        for col in (text_col, label_col):
            if col not in frame.columns:
                valid = ", ".join(map(str, frame.columns))
                raise MasbenchError(f"column {col!r} not in {p} (valid: {valid})")
        if frame.empty:
            raise MasbenchError(f"{p} has no rows{'' if by_index else ' below its header'}: a data set needs examples")
        _check_complete(frame, p, [text_col, label_col], header_lines=0 if by_index else 1)
        return frame[text_col].tolist(), frame[label_col].tolist()

    texts, labels = read(file)
    classes = sorted(set(labels), key=lambda v: (not _is_number(v), float(v) if _is_number(v) else 0.0, v))
    check_classes(f"csv:{path}", [str(c) for c in classes])
    ids = {label: i for i, label in enumerate(classes)}
    if test_file is not None:
        test_path = check_file(test_file, "test file")
        test_texts, test_labels_raw = read(test_path)
        unknown = sorted(set(test_labels_raw) - set(ids))
        if unknown:
            raise MasbenchError(f"test file {test_path} has labels {unknown[:5]} that {file} lacks (valid: {classes})")
        train_texts, train_ids = texts, [ids[v] for v in labels]
        test_ids = [ids[v] for v in test_labels_raw]
        files = [file, test_path]
    else:
        n_test = max(1, round(len(texts) * test_fraction))
        if n_test >= len(texts):
            raise MasbenchError(f"{file} has {len(texts)} rows: too few to hold out a test fraction of {test_fraction}")
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
        test_idx, train_idx = sorted(order[:n_test]), sorted(order[n_test:])
        train_texts, train_ids = [texts[i] for i in train_idx], [ids[labels[i]] for i in train_idx]
        test_texts, test_ids = [texts[i] for i in test_idx], [ids[labels[i]] for i in test_idx]
        files = [file]
    source = f"{_file_signature(files)}|{text_col}|{label_col}|{test_fraction if test_file is None else ''}"
    return RawText(train_texts, train_ids, test_texts, test_ids, [str(c) for c in classes], source)


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer.from_pretrained, name, "tokenizer")


def tokenize(name: str, raw: RawText, pretrained: str, max_length: int, data_dir: Path) -> TextDataset:
    """Tokenise both splits with ``pretrained``'s tokenizer, through a cache file."""
    key = hashlib.sha256(f"{raw.source}|{pretrained}|{max_length}".encode()).hexdigest()[:24]

    def build():
        tokenizer = load_tokenizer(pretrained)
        payload = {}
        for split, texts, labels in (("train", raw.train_texts, raw.train_labels),
                                     ("test", raw.test_texts, raw.test_labels)):
            encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="pt")
            payload[f"{split}_input_ids"] = encoded["input_ids"].to(torch.int32)
            payload[f"{split}_attention_mask"] = encoded["attention_mask"].to(torch.uint8)
            payload[f"{split}_labels"] = torch.tensor(labels, dtype=torch.long)
        return payload

    payload = cached_payload(Path(data_dir) / "cache" / f"tokens-{key}.pt", build)
    splits = {
        split: TextSplit(payload[f"{split}_input_ids"], payload[f"{split}_attention_mask"], payload[f"{split}_labels"])
        for split in ("train", "test")
    }
    return TextDataset(name, splits["train"], splits["test"], list(raw.classes))

