"""Datasets: loaders, the on-device batch pipeline, and clear errors."""

from __future__ import annotations

import pytest
import torch

from conftest import shared_data, write_csv, write_image_folder
from masbench.data import load_dataset
from masbench.data.base import channel_stats, random_crop_flip
from masbench.errors import MasbenchError

CPU = torch.device("cpu")


def test_digits_split_is_fixed_stratified_and_complete():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert len(a.train) + len(a.test) == 1797
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    test_share = a.test.labels.bincount() / (a.train.labels.bincount() + a.test.labels.bincount())
    assert ((test_share - 0.2).abs() < 0.01).all()
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    # The digits are scikit-learn's: the same pixel sums, class by class.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for c in range(10):
        ours = torch.cat([a.train.images[a.train.labels == c], a.test.images[a.test.labels == c]]).double().sum()
        theirs = (torch.from_numpy(bunch.images[bunch.target == c]) * 15).round().sum()
        assert ours.item() == theirs.item()


def test_channel_stats_match_a_direct_computation():
    images = torch.randint(0, 256, (20, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images)
    x = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), x.mean((0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), x.transpose(0, 1).reshape(3, -1).std(1))


def test_random_crop_flip_equals_a_per_image_reference():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 6, 5), dtype=torch.uint8, generator=g)
    state = g.get_state()
    out = random_crop_flip(images, 2, g)
    g.set_state(state)
    shifts = torch.randint(0, 5, (16, 2), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    for i in range(16):
        padded = torch.nn.functional.pad(images[i], (2, 2, 2, 2))
        dy, dx = shifts[i].tolist()
        crop = padded[:, dy : dy + 6, dx : dx + 5]
        if flips[i]:
            crop = crop.flip(-1)
        assert torch.equal(out[i], crop), i
    assert flips.any() and not flips.all() and shifts.unique().numel() > 1


def test_batches_cover_every_example_once_and_a_seed_repeats_them():
    data = load_dataset("digits")

    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        return list(data.batches("train", 100, CPU, g))

    first, again, other = epoch(0), epoch(0), epoch(1)
    labels = torch.cat([b.labels for b in first])
    assert labels.bincount().tolist() == data.train.labels.bincount().tolist()
    assert [len(b) for b in first][:-1] == [100] * (len(first) - 1)
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(first, again))
    assert not torch.equal(first[0].labels, other[0].labels)
    # Normalised with the train statistics: mean 0, std 1 over the unshuffled training set.
    inputs = torch.cat([b.inputs for b in data.batches("train", 500, CPU)])
    assert inputs.mean().abs() < 1e-5 and (inputs.std() - 1).abs() < 1e-3


def test_evaluation_batches_are_in_order_and_not_augmented(image_folder):
    data = load_dataset(f"imagefolder:{image_folder}")
    batches = list(data.batches("test", 5, CPU, None))
    assert torch.equal(torch.cat([b.labels for b in batches]), data.test.labels)
    expected = (data.test.images.float() / 255 - torch.tensor(data.mean).view(1, 3, 1, 1)) / torch.tensor(
        data.std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(torch.cat([b.inputs for b in batches]), expected)


def test_image_folder_layout_and_cache(image_folder, tmp_path):
    data = load_dataset(f"imagefolder:{image_folder}", tmp_path / "cache_here")
    assert data.classes == ["cat", "dog", "owl"]
    assert data.train.images.shape == (36, 3, 12, 10) and data.train.images.dtype == torch.uint8
    assert data.train.labels.bincount().tolist() == [12, 12, 12]
    assert len(data.test) == 12
    cached = list((tmp_path / "cache_here" / "cache").glob("imagefolder-*.pt"))
    assert len(cached) == 1
    again = load_dataset(f"imagefolder:{image_folder}", tmp_path / "cache_here")
    assert torch.equal(again.train.images, data.train.images)
    # The class colour survives decoding: channel c is brightest for class c.
    for c in range(3):
        assert data.train.images[data.train.labels == c].float().mean((0, 2, 3)).argmax() == c


def test_image_folder_cache_follows_the_files(image_folder, tmp_path):
    first = load_dataset(f"imagefolder:{image_folder}", tmp_path)
    write_image_folder(image_folder, classes=("cat", "dog", "owl", "yak"), per_class=(2, 1))
    second = load_dataset(f"imagefolder:{image_folder}", tmp_path)
    assert second.classes == ["cat", "dog", "owl", "yak"] and len(second.train) == len(first.train) + 2


def test_subsets_are_fixed_and_sized(image_folder):
    a = load_dataset(f"imagefolder:{image_folder}", train_subset=10, test_subset=4)
    b = load_dataset(f"imagefolder:{image_folder}", train_subset=10, test_subset=4)
    assert len(a.train) == 10 and len(a.test) == 4
    assert torch.equal(a.train.labels, b.train.labels)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda root: (root / "train" / "cat" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00trunc"),
         "cannot decode image"),
        (lambda root: __import__("shutil").rmtree(root / "test"), "lacks train/ and test/"),
        (lambda root: write_image_folder(root, classes=("cat",), per_class=(1, 0), size=(5, 5), seed=3),
         "all images must have one size"),
    ],
)
def test_image_folder_errors_are_one_line(image_folder, mutate, message):
    mutate(image_folder)
    with pytest.raises(MasbenchError) as error:
        load_dataset(f"imagefolder:{image_folder}")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_real_cifar10_jpeg_subset(cifar_subset):
    data = load_dataset(f"imagefolder:{cifar_subset}")
    assert data.classes[:3] == ["airplane", "automobile", "bird"] and data.num_classes == 10
    assert data.train.images.shape == (200, 3, 32, 32) and len(data.test) == 50
    assert all(0.3 < m < 0.65 for m in data.mean)


# --- text ------------------------------------------------------------------------------------------------


def test_csv_by_names_with_a_seeded_test_fraction(csv_file, minilm_path):
    data = load_dataset(f"csv:{csv_file}", pretrained=minilm_path, test_fraction=0.25)
    assert data.classes == ["bad", "good"]
    assert len(data.train) == 12 and len(data.test) == 4
    again = load_dataset(f"csv:{csv_file}", pretrained=minilm_path, test_fraction=0.25)
    assert torch.equal(again.test.input_ids, data.test.input_ids)
    batch = next(data.batches("train", 4, CPU, torch.Generator().manual_seed(0)))
    assert set(batch.inputs) == {"input_ids", "attention_mask"}
    # Batches are trimmed to their longest sequence.
    assert batch.inputs["attention_mask"][:, -1].any()


def test_csv_by_indices_with_a_test_file_and_label_mapping(tmp_path, minilm_path):
    train = write_csv(tmp_path / "train.tsv", header=False, sep="\t")
    test = write_csv(tmp_path / "test.tsv", rows_per_label=2, header=False, sep="\t")
    data = load_dataset(f"csv:{train}", pretrained=minilm_path, text_column="0", label_column="1",
                        test_file=str(test))
    assert len(data.train) == 16 and len(data.test) == 4
    assert data.test.labels.tolist() == [1, 1, 0, 0]  # good -> 1, bad -> 0 (sorted labels)


@pytest.mark.parametrize(
    "content, options, message",
    [
        ("text,label\nfine,1\nbroken", {}, "bad.csv: line 3 lacks a value"),
        ("text,label\na,1\nb,2\n", {"label_column": "stars"}, "column 'stars' not in"),
        ("text,label\na,1\nb,2\n", {"text_column": "0"}, "give both as names or both as indices"),
        ('text,label\n"unterminated,1\n', {}, "cannot parse"),
    ],
)
def test_csv_errors_are_one_line(tmp_path, minilm_path, content, options, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(MasbenchError) as error:
        load_dataset(f"csv:{path}", pretrained=minilm_path, **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_csv_test_file_with_an_unknown_label(tmp_path, minilm_path):
    train = write_csv(tmp_path / "train.csv")
    test = tmp_path / "test.csv"
    test.write_text("text,label\nmeh,neutral\n")
    with pytest.raises(MasbenchError, match="labels \\['neutral'\\]"):
        load_dataset(f"csv:{train}", pretrained=minilm_path, test_file=str(test))


def test_cola_and_agnews_from_local_files(tmp_path, minilm_path):
    cola = tmp_path / "data" / "cola" / "raw"
    cola.mkdir(parents=True)
    (cola / "in_domain_train.tsv").write_text("gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n" * 3)
    (cola / "in_domain_dev.tsv").write_text("gj04\t1\t\tShe left.\n")
    (cola / "out_of_domain_dev.tsv").write_text("cl03\t0\t*\tLeft she the.")
    data = load_dataset("cola", tmp_path / "data", pretrained=minilm_path)
    assert data.classes == ["unacceptable", "acceptable"]
    assert len(data.train) == 6 and data.test.labels.tolist() == [1, 0]

    news = tmp_path / "data" / "ag_news"
    news.mkdir()
    (news / "train.csv").write_text('"3","Stocks rise","Markets up today"\n"2","Goal!","A late winner"\n')
    (news / "test.csv").write_text('"1","Summit","Leaders meet"\n')
    data = load_dataset("agnews", tmp_path / "data", pretrained=minilm_path)
    assert data.classes == ["World", "Sports", "Business", "Sci/Tech"]
    assert data.train.labels.tolist() == [2, 1] and data.test.labels.tolist() == [0]


def test_real_cola_from_shared_data(minilm_path, tmp_path):
    shared = shared_data("cola", "raw", "in_domain_train.tsv").parent.parent.parent
    data = load_dataset("cola", shared, pretrained=minilm_path, max_length=64)
    assert len(data.train) == 8551 and len(data.test) == 1043  # GLUE CoLA train / validation
    assert data.train.input_ids.shape[1] <= 64
    share = data.train.labels.float().mean().item()
    assert 0.65 < share < 0.75  # about 70% of CoLA's sentences are acceptable


@pytest.mark.parametrize(
    "name, message",
    [
        ("cifar10", "cifar10 not found in"),
        ("cifar100", "cifar100 not found in"),
        ("cola", "CoLA not found: put CoLA v1.1's in_domain_train.tsv"),
        ("agnews", "AG News not found: put train.csv and test.csv"),
        ("mnist", "Unknown dataset: 'mnist'"),
        ("imagefolder:", "Unknown dataset: 'imagefolder:'"),
    ],
)
def test_missing_data_says_where_to_put_it(name, message, tmp_path, minilm_path):
    with pytest.raises(MasbenchError) as error:
        load_dataset(name, tmp_path / "empty", pretrained=minilm_path)
    assert message in str(error.value) and "\n" not in str(error.value)
