"""The quickstart's report: ``report.md`` beside its PNGs, and one self-contained ``report.html``.

The report is rendered from one results dict (also saved as ``results.json``), so every number in it can be
checked against the artifacts' sidecars:

``data``: path, synthetic, classes, train_images, val_images.
``training``: checkpoint, epochs, wall_s, top1, top5, curves_png.
``accuracy``: rows of artifact, backend, precision, top1, top5, agreement (top-1 agreement with FP32), and
num_images, unreadable_skipped, unreadable_examples (the images evaluated, and the unreadable ones left out).
``gate``: max_top1_drop, max_top5_drop, top1_drop, top5_drop, passed.
Accuracy figures, agreements and drops are in percent / points, as :mod:`alexnet_deploy.verify` reports them.

Every string of the results (paths, file and class names, notes, the CPU's model name) is escaped for each format
(:mod:`alexnet_deploy.core.text` for Markdown, :func:`html.escape` for HTML): a paragraph is a sequence of
parts, plain text, :class:`Code` (a name shown as code) or :class:`Bold`, rendered once per format, so no name
can become markup, raw HTML, a link or a new table column.
``calibration``: rows of method, form, top1, agreement, chosen (on held-out calibration images).
``bench``: rows of name, batch, median_ms, p90_ms, p99_ms, throughput, ratio, others_cpu_cores, reliable;
baseline; plot_png; contention (:meth:`alexnet_deploy.bench.contention.Contention.to_dict`: the other processes'
CPU use while timing; figures taken under contention are marked unreliable).
``system``: versions, cpu, cpu_model, cores, simd (the SIMD features of /proc/cpuinfo that pick kernels), gpus.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from alexnet_deploy.core.files import refuse_symlink, write_bytes_atomic, write_json_atomic
from alexnet_deploy.core.text import console_text, markdown_code, markdown_text


class Code(str):
    """A name (a path, a file) shown as code."""


class Bold(str):
    """Words shown in bold."""


Paragraph = tuple[str, ...]  # parts: plain text, Code or Bold


def _pct(x: float | None) -> str:
    """Percent figures (the library reports accuracy in percent) as text."""
    return "" if x is None else f"{x:.2f}%"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _evaluated(row: dict[str, Any]) -> Paragraph:
    """ "200 validation images evaluated; 2 unreadable skipped (`a.JPEG`, `b.JPEG`).": what the figures count."""
    skipped, examples = row.get("unreadable_skipped") or 0, row.get("unreadable_examples") or []
    text = f"{row['num_images']} validation images evaluated; {skipped} unreadable skipped"
    if not skipped:
        return (text + ".",)
    names: list[str] = []
    for n in examples:
        names += [", ", Code(n)] if names else [Code(n)]
    more = ", ..." if skipped > len(examples) else ""
    return (text + " (", *names, f"{more}).")


def _contention_words(contention: dict[str, Any] | None, rows: list[dict[str, Any]]) -> list[Paragraph]:
    """The paragraph on the other processes' CPU use while timing; a bold warning when figures are unreliable."""
    if not contention:
        return [("Other processes' CPU use while timing was not measured for these figures.",)]
    use = (
        f"other processes used {contention['others_cpu_cores']:.2f} of {contention['cores']} cores on average "
        f"({contention['others_cpu_fraction']:.1%} of the machine) while these figures were timed; "
        f"the threshold is {contention['threshold_cores']:g} core"
    )
    flagged = sum(r.get("reliable") is False for r in rows)
    if not flagged:
        return [(f"Measured on a quiet machine: {use}.",)]
    return [
        (
            Bold(f"UNRELIABLE: {flagged} of {len(rows)} figures were taken under contention"),
            f" ({use}); they are marked in the table and should be measured again on a quiet machine before being "
            "quoted.",
        )
    ]


Section = tuple[str, list[Paragraph], list[list[str]] | None, str | None]


def _sections(results: dict[str, Any]) -> list[Section]:
    """(title, paragraphs, table rows with headers first, image) for each section, shared by MD and HTML."""
    out: list[Section] = []
    data = results.get("data", {})
    words: list[Paragraph] = [
        (
            "Data: ",
            Code(str(data.get("path", ""))),
            f": {data.get('classes', '?')} classes, {data.get('train_images', '?')} training and "
            f"{data.get('val_images', '?')} validation images.",
        )
    ]
    if data.get("synthetic"):
        words.append(
            (
                Bold("This run used the built-in SYNTHETIC image set"),
                " (generated patterns, not photos): it shows the pipeline working, not how well AlexNet classifies "
                "real images. Pass ",
                Code("--data DIR"),
                " for the real check.",
            )
        )
    out.append(("Data", words, None, None))

    tr = results.get("training")
    if tr:
        words = [
            (
                "Checkpoint ",
                Code(str(tr.get("checkpoint", ""))),
                f" after {tr.get('epochs', '?')} epoch(s) in {tr.get('wall_s') or 0:.0f} s: top-1 "
                f"{_pct(tr.get('top1'))}, top-5 {_pct(tr.get('top5'))} on validation.",
            )
        ]
        out.append(("Training", words, None, tr.get("curves_png")))

    acc = results.get("accuracy") or []
    if acc:
        rows = [["artifact", "backend", "precision", "top-1", "top-5", "top-1 agreement with FP32"]]
        rows += [
            [
                Path(r["artifact"]).name,
                r.get("backend", ""),
                r.get("precision", ""),
                _pct(r.get("top1")),
                _pct(r.get("top5")),
                _pct(r.get("agreement")),
            ]
            for r in acc
        ]
        gate = results.get("gate", {})
        words = []
        if acc[0].get("num_images") is not None:
            words.append(_evaluated(acc[0]))
        if gate:
            verdict = "PASSED" if gate.get("passed") else "FAILED"
            words.append(
                (
                    f"Accuracy gate {verdict}: INT8 top-1 drop {gate.get('top1_drop') or 0:.2f} points "
                    f"(allowed {gate.get('max_top1_drop', '?')}), top-5 drop {gate.get('top5_drop') or 0:.2f} "
                    f"points (allowed {gate.get('max_top5_drop', '?')}).",
                )
            )
        out.append(("Accuracy", words, rows, None))

    choice = (results.get("int8") or {}).get("selection") or {}
    if choice.get("candidates"):
        batches = sorted({b for c in choice["candidates"] for b in c.get("speed", {})}, key=int)
        rows = [["candidate", "gate", "agreement with FP32", *(f"batch {b} images/s (FP32 on it)" for b in batches)]]
        for c in choice["candidates"]:
            label = c["backend"] + (f" ({c['form']} form)" if c.get("form") else "")
            cells = []
            for b in batches:
                mine, fp32 = c["speed"].get(b), c.get("fp32_speed", {}).get(b)
                cells.append(f"{mine['images_per_s']:.0f} ({fp32['images_per_s']:.0f})" if mine and fp32 else
                             f"{mine['images_per_s']:.0f}" if mine else "")  # fmt: skip
            rows.append([label, "passed" if c["passed"] else "failed", _pct(c.get("agreement_top1")), *cells])
        words = [(f"Chosen: {choice['chosen']}, {choice['why']} (speeds on random inputs, this machine).",)]
        words += [(f"Warning: {n}",) for n in (results.get("int8") or {}).get("notes") or []]
        out.append(("INT8 engine choice", words, rows, None))

    cal = results.get("calibration") or []
    if cal:
        rows = [["method", "Q/DQ form", "top-1 (held-out calibration images)", "agreement with FP32", "chosen"]]
        rows += [
            [
                r["method"],
                r.get("form", ""),
                _pct(r.get("top1")),
                _pct(r.get("agreement")),
                "yes" if r.get("chosen") else "",
            ]
            for r in cal
        ]
        held_out = [("Scored on held-out calibration images, never the eval set.",)]
        out.append(("Calibration methods", held_out, rows, None))

    bench = results.get("bench") or {}
    if bench.get("rows"):
        measured = any(r.get("reliable") is not None for r in bench["rows"])
        rows = [["engine", "batch", "median ms", "p90 ms", "p99 ms", "images/s", f"x {bench.get('baseline', '')}"]]
        rows[0] += ["others' cores"] if measured else []
        for r in bench["rows"]:
            row = [
                r["name"],
                str(r["batch"]),
                f"{r['median_ms']:.2f}",
                f"{r['p90_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['throughput']:.1f}",
                f"{r['ratio']:.2f}" if r.get("ratio") is not None else "",
            ]
            if measured:
                cores = r.get("others_cpu_cores")
                flag = " (unreliable)" if r.get("reliable") is False else ""
                row.append("" if cores is None else f"{cores:.2f}{flag}")
            rows.append(row)
        words = [(bench["note"],)] if bench.get("note") else []
        words += _contention_words(bench.get("contention"), bench["rows"])
        out.append(("Latency and throughput", words, rows, bench.get("plot_png")))

    system = results.get("system") or {}
    if system:
        rows = [["what", "value"]]
        rows += [[k, str(v)] for k, v in (system.get("versions") or {}).items()]
        if system.get("cpu"):
            rows.append(["cpu", str(system["cpu"])])
        if system.get("cores"):
            rows.append(["cores", str(system["cores"])])
        if "simd" in system:
            rows.append(["simd", ", ".join(system["simd"]) or "none of the tracked features"])
        rows.append(["gpus", ", ".join(system.get("gpus") or []) or "none"])
        out.append(("Versions and hardware", [], rows, None))
    return out


def _markdown(part: str) -> str:
    if isinstance(part, Code):
        return markdown_code(part)
    return f"**{markdown_text(part)}**" if isinstance(part, Bold) else markdown_text(part)


def _html(part: str) -> str:
    if isinstance(part, Code):
        return f"<code>{html.escape(console_text(part))}</code>"
    return f"<strong>{html.escape(part)}</strong>" if isinstance(part, Bold) else html.escape(console_text(part))


def _image_target(name: str) -> str:
    """A file name as a Markdown link destination: ``<...>``, with what could end it escaped."""
    return "<" + console_text(name).replace("\\", "\\\\").replace("<", "\\<").replace(">", "\\>") + ">"


def render_markdown(results: dict[str, Any]) -> str:
    """The report as Markdown (images referenced by file name, beside the report); every string escaped."""
    lines = [f"# {markdown_text(str(results.get('title', 'alexnet-deploy report')))}", ""]
    for title, words, rows, image in _sections(results):
        lines += [f"## {markdown_text(title)}", ""]
        for w in words:
            lines += ["".join(_markdown(p) for p in w), ""]
        if rows:
            lines += _table([markdown_text(h) for h in rows[0]], [[markdown_text(c) for c in r] for r in rows[1:]])
            lines += [""]
        if image:
            name = Path(image).name
            target = name if re.fullmatch(r"[\w.-]+", name) else _image_target(name)
            lines += [f"![{markdown_text(title)}]({target})", ""]
    return "\n".join(lines)


def render_html(results: dict[str, Any], base: Path) -> str:
    """The report as one self-contained HTML page (PNGs embedded as data URIs)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(results.get('title', 'alexnet-deploy report'))}</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child"
        "{text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{esc(results.get('title', 'alexnet-deploy report'))}</h1>",
    ]
    for title, words, rows, image in _sections(results):
        parts.append(f"<h2>{esc(title)}</h2>")
        parts += [f"<p>{''.join(_html(p) for p in w)}</p>" for w in words]
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in rows[0]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
            parts.append("</table>")
        if image and (base / Path(image).name).is_file():
            data = base64.b64encode((base / Path(image).name).read_bytes()).decode()
            parts.append(f"<img alt='{esc(title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results.json``, ``report.md`` and ``report.html`` into ``out_dir``; return the Markdown path."""
    out_dir = Path(out_dir)
    for name in ("results.json", "report.md", "report.html"):  # a planted link refuses the set before any is written
        refuse_symlink(out_dir / name)
    write_json_atomic(out_dir / "results.json", results)
    md = out_dir / "report.md"
    write_bytes_atomic(md, render_markdown(results).encode())
    write_bytes_atomic(out_dir / "report.html", render_html(results, out_dir).encode())
    return md
