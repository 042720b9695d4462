"""A run's three random streams (masbench.seeds): derived apart from the cell seed, each driving its own part.

The adversary: one stream's derivation changed (monkeypatched) must change that stream's part and leave the
other two bitwise as they were.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from masbench import seeds
from masbench.data import load_dataset
from masbench.data.base import ImageDataset, crop_flip_params, train_batches
from masbench.data.validation import split_seed
from masbench.engine import CHECKPOINT_FORMAT, Member, checkpoint_path, prepare, train, train_one
from masbench.spec import make_spec
from masbench.engine import ExecOptions
from reliability import StopAfter, Warnings, numbers

CPU = torch.device("cpu")
STREAMS = ("weights", "order", "augment")


def test_a_stream_seed_is_the_documented_hash():
    """Recomputed here from the documented text: sha256 of ``masbench.<stream>:<seed>``, 8 bytes, 63 bits."""
    for seed in (0, 1, 12345):
        for stream in seeds.STREAMS:
            digest = hashlib.sha256(f"masbench.{stream}:{seed}".encode()).digest()
            assert seeds.stream_seed(seed, stream) == int.from_bytes(digest[:8], "little") & (2**63 - 1)


def test_the_validation_split_keeps_its_seed():
    """split_seed now goes through stream_seed, with the text it always hashed: the splits do not move."""
    digest = hashlib.sha256(b"masbench.val_split:7").digest()
    assert split_seed(7) == int.from_bytes(digest[:8], "little") & (2**63 - 1)


def test_streams_differ_from_each_other_and_across_seeds():
    values = [seeds.stream_seed(seed, stream) for seed in range(20) for stream in seeds.STREAMS]
    assert len(set(values)) == len(values)


def test_an_unknown_stream_is_refused():
    with pytest.raises(ValueError, match="Invalid stream: 'dropout'"):
        seeds.stream_seed(0, "dropout")


def _observed(p, epochs: int = 2):
    """(initial weights, labels of each batch, images of each batch) over ``epochs`` of a prepared run.

    The labels follow the order alone; the images follow order and augmentation.
    """
    weights = [t.clone() for t in p.model.state_dict().values()]
    labels, images = [], []
    for _ in range(epochs):
        for batch in train_batches(p.dataset, 8, CPU, p.generator, p.augment_generator):
            labels.append(batch.labels)
            images.append(batch.inputs)
    return weights, labels, images


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture
def image_spec(image_folder):
    return make_spec(dataset=f"imagefolder:{image_folder}", model="cnn", epochs=1, seed=3)


def _shifted(stream: str):
    """``stream_seed`` with one stream's derivation changed."""
    real = seeds.stream_seed

    def patched(seed, name):
        return real(seed, name) ^ 0x5A5A if name == stream else real(seed, name)
    return patched


@pytest.mark.parametrize("stream", STREAMS)
def test_changing_one_streams_derivation_changes_its_part_alone(stream, image_spec, monkeypatch):
    assert prepare([image_spec], ExecOptions(device="cpu")).dataset.augment  # augmentation is on: observable
    base_weights, base_labels, base_images = _observed(prepare([image_spec], ExecOptions(device="cpu")).members[0])
    monkeypatch.setattr(seeds, "stream_seed", _shifted(stream))
    weights, labels, images = _observed(prepare([image_spec], ExecOptions(device="cpu")).members[0])
    assert _same(weights, base_weights) == (stream != "weights")
    assert _same(labels, base_labels) == (stream != "order")
    assert _same(images, base_images) == (stream == "weights")


def test_two_seeds_of_a_cell_differ_in_every_stream(image_spec):
    one = _observed(prepare([image_spec], ExecOptions(device="cpu")).members[0])
    other_spec = image_spec.model_copy(update={"seed": 4})
    other = prepare([other_spec], ExecOptions(device="cpu")).members[0]
    assert not _same(one[0], _observed(other)[0])
    # The other seed's augmentation with this order, then the other seed's order: each stream moved.
    mixed = prepare([image_spec], ExecOptions(device="cpu")).members[0]
    mixed.augment_generator = seeds.augment_generator(4)
    _, labels, images = _observed(mixed)
    assert _same(labels, one[1]) and not _same(images, one[2])
    mixed = prepare([image_spec], ExecOptions(device="cpu")).members[0]
    mixed.generator = seeds.order_generator(4)
    _, labels, _ = _observed(mixed)
    assert not _same(labels, one[1])


def test_the_batches_follow_an_independent_reference(image_folder):
    """Order: one randperm of the order generator per epoch; crops and flips: the augmentation generator's
    draws, batch by batch, whatever the order generator did."""
    data = load_dataset(f"imagefolder:{image_folder}")
    order, augment = seeds.order_generator(0), seeds.augment_generator(0)
    batches = list(data.batches("train", 8, CPU, order, augment_generator=augment))
    permutation = torch.randperm(len(data.train), generator=seeds.order_generator(0))
    reference = seeds.augment_generator(0)
    plain = ImageDataset(data.name, data.train, data.test, data.classes, data.mean, data.std, augment=False)
    normalised = next(plain.batches("train", len(data.train), CPU, None)).inputs
    assert len(batches) == -(-len(data.train) // 8)
    for i, batch in enumerate(batches):
        index = permutation[i * 8:(i + 1) * 8]
        assert torch.equal(batch.labels, data.train.labels[index])
        shifts, flips = crop_flip_params(len(index), data.crop_padding, reference)
        unaugmented = normalised[index]
        expected = _crop_flip_reference(unaugmented, data.crop_padding, shifts, flips, data)
        assert torch.allclose(batch.inputs, expected, atol=1e-6)


def _crop_flip_reference(normalised, padding, shifts, flips, data):
    """Per image, in plain loops: pad with the value a zero pixel normalises to, crop, flip."""
    zero = torch.tensor([-m / s for m, s in zip(data.mean, data.std)]).view(-1, 1, 1)
    out = []
    for image, (dy, dx), flip in zip(normalised, shifts.tolist(), flips.tolist()):
        c, h, w = image.shape
        padded = zero.expand(c, h + 2 * padding, w + 2 * padding).clone()
        padded[:, padding:padding + h, padding:padding + w] = image
        crop = padded[:, dy:dy + h, dx:dx + w]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_without_an_augmentation_generator_the_order_generator_draws_both(image_folder):
    """``augment_generator=None``: the one-stream protocol, the permutation then the crops, from one generator."""
    data = load_dataset(f"imagefolder:{image_folder}")
    one = list(data.batches("train", 8, CPU, torch.Generator().manual_seed(5)))
    shared = torch.Generator().manual_seed(5)
    both = list(data.batches("train", 8, CPU, shared, augment_generator=shared))
    assert _same([b.inputs for b in one], [b.inputs for b in both])
    apart = list(data.batches("train", 8, CPU, torch.Generator().manual_seed(5),
                              augment_generator=torch.Generator().manual_seed(5)))
    assert not _same([b.inputs for b in one], [b.inputs for b in apart])


class OldProtocol(ImageDataset):
    """A plugin's subclass written for the one-stream protocol: no augment_generator parameter."""

    def batches(self, split, batch_size, device, generator=None, channels_last=False, shard=None):
        self.calls = getattr(self, "calls", 0) + 1
        return super().batches(split, batch_size, device, generator, channels_last, shard)


def test_a_data_set_without_the_augmentation_parameter_still_trains_on_one_stream(image_folder):
    data = load_dataset(f"imagefolder:{image_folder}")
    old = OldProtocol(data.name, data.train, data.test, data.classes, data.mean, data.std)
    got = list(train_batches(old, 8, CPU, torch.Generator().manual_seed(1), seeds.augment_generator(1)))
    assert old.calls == 1
    expected = list(data.batches("train", 8, CPU, torch.Generator().manual_seed(1)))
    assert _same([b.inputs for b in got], [b.inputs for b in expected])


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_shares_make_the_global_batch_with_both_generators(image_folder, world):
    data = load_dataset(f"imagefolder:{image_folder}")
    whole = list(train_batches(data, 8, CPU, seeds.order_generator(2), seeds.augment_generator(2)))
    shares = [list(train_batches(data, 8, CPU, seeds.order_generator(2), seeds.augment_generator(2),
                                 shard=(rank, world))) for rank in range(world)]
    for i, batch in enumerate(whole):
        for rank in range(world):
            assert torch.equal(shares[rank][i].inputs, batch.inputs[rank::world])
            assert torch.equal(shares[rank][i].labels, batch.labels[rank::world])


# --- checkpoints: both generators saved and restored; an older seeding is not resumed ----------------------


def _as_format_1(path) -> None:
    """Rewrite a checkpoint as format 1 wrote it: one data generator, under ``data``."""
    state = torch.load(path, weights_only=True)
    state["format"] = 1
    del state["rng"]["augment"]
    torch.save(state, path)


@pytest.fixture
def augmented_specs(image_folder):
    base = dict(dataset=f"imagefolder:{image_folder}", model="cnn", batch_size=8, epochs=3, lr=1e-2, momentum=0.9)
    return [make_spec(**base, optimizer="mas", lambda_adam=0.3, lambda_sgd=0.7, seed=0),
            make_spec(**base, optimizer="adam", seed=1)]


def test_an_augmented_run_resumes_bit_exact_from_both_generators(augmented_specs, tmp_path):
    spec = augmented_specs[0]
    straight = train_one(spec, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "a"))
    options = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "b")
    with pytest.raises(StopAfter.Crash):
        train_one(spec, options, [StopAfter(1)])
    state = torch.load(checkpoint_path(spec, options), weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT == 2
    assert not torch.equal(state["rng"]["data"], state["rng"]["augment"])
    resumed = train_one(spec, options)
    assert resumed.resumed_from == 1 and numbers(resumed) == numbers(straight)


def test_a_packed_member_with_a_format_1_checkpoint_starts_fresh_with_one_line(augmented_specs, tmp_path):
    straight = train([Member(s) for s in augmented_specs],
                          ExecOptions(device="cpu", checkpoint_dir=tmp_path / "a"))
    options = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "b")
    with pytest.raises(StopAfter.Crash):
        train_one(augmented_specs[0], options, [StopAfter(1)])
    _as_format_1(checkpoint_path(augmented_specs[0], options))
    warnings = Warnings()
    outcomes = train([Member(augmented_specs[0], [warnings]), Member(augmented_specs[1])], options)
    assert [o.result.resumed_from for o in outcomes] == [0, 0]
    assert len(warnings.messages) == 1 and "separate seeds (format 1)" in warnings.messages[0]
    for again, first in zip(outcomes, straight):
        assert numbers(again.result) == numbers(first.result)
