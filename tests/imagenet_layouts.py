"""ImageNet's flat val layout made from a wnid-folder set, for the tests of both layouts."""

from __future__ import annotations


def flat_copy(val, dst, label_file: str = "LOC_val_solution.csv", per_class: int | None = None):
    """The images of a wnid-folder ``val`` as one flat folder of symlinks, with a label file naming each wnid."""
    dst.mkdir(parents=True)
    rows = []
    for folder in sorted(p for p in val.iterdir() if p.is_dir()):
        for photo in sorted(folder.iterdir())[:per_class]:
            (dst / photo.name).symlink_to(photo)
            rows.append((photo.name, folder.name))
    if label_file == "LOC_val_solution.csv":
        text = "ImageId,PredictionString\n" + "".join(f"{n.split('.')[0]},{w} 1 2 3 4 {w} 5 6 7 8\n" for n, w in rows)
    else:
        text = "".join(f"{n} {w}\n" for n, w in rows)
    (dst / label_file).write_text(text)
    return dst
