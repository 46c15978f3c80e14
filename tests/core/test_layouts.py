"""ImageNet's folder layouts: the flat val folder with a label file gives the samples and labels the same images
in wnid folders give; label files of other formats are refused with a sentence."""

from __future__ import annotations

import pytest
from imagenet_layouts import flat_copy

from alexnet_deploy.core.data import ImageFolderDataset
from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.layouts import FlatLabelledDataset, open_image_folder, read_label_file


@pytest.mark.parametrize("label_file", ["LOC_val_solution.csv", "val_labels.txt"])
def test_a_flat_folder_gives_the_samples_of_its_wnid_folders(imagenette10, tmp_path, label_file):
    flat = open_image_folder(flat_copy(imagenette10 / "val", tmp_path / "flat", label_file))
    folders = ImageFolderDataset(imagenette10 / "val")
    assert isinstance(flat, FlatLabelledDataset) and flat.classes == folders.classes
    assert [(p.rsplit("/", 1)[-1], t) for p, t in flat.samples] == [
        (p.rsplit("/", 1)[-1], t) for p, t in folders.samples
    ]
    assert flat.targets == folders.targets and len(flat) == 100


def test_the_label_file_may_sit_beside_the_flat_folder(imagenette10, tmp_path):
    flat = flat_copy(imagenette10 / "val", tmp_path / "val", per_class=2)
    (flat / "LOC_val_solution.csv").rename(tmp_path / "LOC_val_solution.csv")
    assert len(open_image_folder(flat)) == 20


def test_images_the_label_file_does_not_name_are_left_out(imagenette10, tmp_path, caplog):
    flat = flat_copy(imagenette10 / "val", tmp_path / "flat", "val_labels.txt", per_class=2)
    lines = (flat / "val_labels.txt").read_text().splitlines()
    (flat / "val_labels.txt").write_text("\n".join(lines[:-1]) + "\n")
    assert len(open_image_folder(flat)) == 19
    assert "1 image(s) in" in caplog.text and "were left out" in caplog.text


def test_a_flat_folder_without_a_label_file_says_what_is_accepted(imagenette10, tmp_path):
    flat = flat_copy(imagenette10 / "val", tmp_path / "flat", per_class=1)
    (flat / "LOC_val_solution.csv").unlink()
    with pytest.raises(DataError, match="no class subfolders and no label file.*LOC_val_solution.csv"):
        open_image_folder(flat)


def test_the_devkit_ground_truth_and_index_lists_are_refused(tmp_path):
    devkit = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    devkit.write_text("490\n361\n171\n")
    with pytest.raises(DataError, match="devkit's ILSVRC2012_IDs in meta.mat order, not class indices"):
        read_label_file(devkit)
    index = tmp_path / "val.txt"
    index.write_text("ILSVRC2012_val_00000001.JPEG 65\n")
    with pytest.raises(DataError, match="'file index' line .*accepted label files are LOC_val_solution.csv"):
        read_label_file(index)
    bad = tmp_path / "LOC_val_solution.csv"
    bad.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,65 1 2 3 4\n")
    with pytest.raises(DataError, match="does not start its PredictionString with a WordNet id"):
        read_label_file(bad)


def test_kaggles_layout_finds_loc_val_solution_three_folders_up(imagenette10, tmp_path):
    val = flat_copy(imagenette10 / "val", tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val", per_class=1)
    (val / "LOC_val_solution.csv").rename(tmp_path / "LOC_val_solution.csv")
    dataset = open_image_folder(val)
    assert len(dataset) == 10 and dataset.label_file == tmp_path / "LOC_val_solution.csv"
