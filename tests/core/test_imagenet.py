"""The ImageNet-1k label space shipped in core: 1000 sorted wnids, torchvision's names in the same order, and the
wnids of the shipped data sets found in it."""

from __future__ import annotations

import pytest

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.imagenet import display_names, imagenet1k, is_imagenet1k, read_classes_file


def test_the_table_holds_1000_unique_sorted_wnids():
    space = imagenet1k()
    assert len(space) == 1000 and len(set(space.ids)) == 1000
    assert list(space.ids) == sorted(space.ids)
    assert all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() for w in space.ids)
    assert space.ids[0] == "n01440764" and space.names[0] == "tench" and space.ids[-1] == "n15075141"
    assert is_imagenet1k(list(space.ids)) and not is_imagenet1k(list(space.ids)[::-1])


def test_names_are_torchvisions_categories_in_order():
    from torchvision.models import AlexNet_Weights

    assert list(imagenet1k().names) == list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def test_the_shipped_data_sets_wnids_are_found(imagenette10, tiny20, tiny100):
    ids = set(imagenet1k().ids)
    imagenette = (imagenette10 / "classes.txt").read_text().split()
    assert len(imagenette) == 10 and set(imagenette) <= ids
    for root in (tiny20, tiny100):
        wnids = [line.split("\t")[0] for line in (root / "classes.tsv").read_text().splitlines() if line.strip()]
        assert wnids and set(wnids) <= ids, root


def test_lookup_by_wnid_name_and_lemma():
    space = imagenet1k()
    assert space.lookup("n01443537") == 1
    assert space.lookup("goldfish") == 1 and space.lookup("Carassius auratus") == 1
    assert space.lookup("goldfish, Carassius auratus") == 1  # a Tiny ImageNet classes.tsv name
    assert space.lookup("no such class") is None


def test_display_names():
    assert display_names(["n01440764", "n01443537"]) == ["tench", "goldfish"]
    assert display_names(["cat", "dog"]) == ["cat", "dog"]
    assert display_names(["cat", "dog"], ["Cat", "Dog"]) == ["Cat", "Dog"]


def test_classes_file(tmp_path):
    ids, names = read_classes_file("imagenet1k")
    assert len(ids) == 1000 and names[1] == "goldfish"
    f = tmp_path / "classes.txt"
    f.write_text("# my classes\ncat\tA cat\n\ndog\n")
    assert read_classes_file(f) == (["cat", "dog"], ["A cat", "dog"])
    f.write_text("cat\ncat\n")
    with pytest.raises(ConfigError, match="names the class 'cat' twice"):
        read_classes_file(f)
    f.write_text("cat\x1b[31m\n")
    with pytest.raises(ConfigError, match="unprintable characters"):
        read_classes_file(f)
    with pytest.raises(ConfigError, match="does not exist"):
        read_classes_file(tmp_path / "missing.txt")
