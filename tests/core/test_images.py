"""Matching a data folder's classes to a model's: by wnid, by name, a subset accepted, a foreign class refused."""

from __future__ import annotations

import pytest

from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.imagenet import imagenet1k
from alexnet_deploy.core.images import check_classes, match_classes

IMAGENET = list(imagenet1k().ids)


def test_a_subset_of_wnid_folders_maps_to_the_models_indices(tmp_path):
    folders = ["n01440764", "n03888257"]
    for f in folders:
        (tmp_path / f).mkdir()
    assert check_classes(tmp_path, folders, IMAGENET) == [0, IMAGENET.index("n03888257")]


def test_folders_named_by_classes_tsv_match_by_name(tmp_path):
    # A folder named otherwise, whose classes.tsv gives the WordNet lemmas (as Tiny ImageNet's does).
    (tmp_path / "fish").mkdir()
    (tmp_path / "classes.tsv").write_text("fish\tgoldfish, Carassius auratus\n")
    assert match_classes(tmp_path, ["fish"], IMAGENET) == [1]
    # and against a model that records display names of its own
    assert match_classes(tmp_path, ["fish"], ["a", "b"], ["tench", "goldfish, Carassius auratus"]) == [1]


def test_a_foreign_class_is_refused_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"do not match the model's 1000 classes .*1 of them \('cifar-cat'\)"):
        check_classes(tmp_path, ["n01440764", "cifar-cat"], IMAGENET)


def test_a_model_with_only_a_class_count(tmp_path):
    counted = [str(i) for i in range(1000)]
    with pytest.raises(DataError, match="records only its class count; if it is an ImageNet-1k model, export it"):
        check_classes(tmp_path, ["n01440764"], counted)
    assert check_classes(tmp_path, ["x", "y"], ["0", "1"]) == [0, 1]  # same count: matched in order
