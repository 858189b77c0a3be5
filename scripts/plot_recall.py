"""Plot recall vs number of facts from `sleepllm eval --via chat --json` reports, as an SVG.

    python scripts/plot_recall.py docs/results/chat10.json docs/results/chat100.json ... \
        --out docs/recall.svg

Every report contributes one point per cycle: recall of all facts told so far, before sleep
(dashed) and after sleep in a new process (solid), for raw cue, chat question and paraphrase.
Plain SVG, no plotting library.
"""
import argparse
import json
from pathlib import Path

SERIES = [("raw_recall", "raw cue", "#1f77b4"), ("chat_recall", "chat question", "#d62728"),
          ("paraphrase_recall", "paraphrase", "#2ca02c")]
W, H, PAD = 640, 400, 56


def points(reports):
    """{(metric, phase): sorted [(n facts, value)]} from the reports' cycle blocks."""
    out = {}
    for rep in reports:
        for c in rep.get("cycle_reports", []):
            for phase in ("before_sleep", "after_sleep"):
                if phase in c:
                    for key, _, _ in SERIES:
                        out.setdefault((key, phase), {})[c["told"]] = c[phase][key]
    return {k: sorted(v.items()) for k, v in out.items()}


def svg(pts, title):
    xs = [n for series in pts.values() for n, _ in series] or [1]
    x_max = max(xs) * 1.05
    sx = lambda n: PAD + (W - 2 * PAD) * n / x_max
    sy = lambda v: H - PAD - (H - 2 * PAD) * v
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
          f'font-family="sans-serif" font-size="12">',
          f'<rect width="{W}" height="{H}" fill="white"/>',
          f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        el.append(f'<line x1="{PAD}" x2="{W - PAD}" y1="{sy(v)}" y2="{sy(v)}" stroke="#ddd"/>')
        el.append(f'<text x="{PAD - 6}" y="{sy(v) + 4}" text-anchor="end">{v:.2f}</text>')
    for n in sorted(set(xs)):
        el.append(f'<text x="{sx(n)}" y="{H - PAD + 16}" text-anchor="middle">{n}</text>')
    el.append(f'<text x="{W / 2}" y="{H - 14}" text-anchor="middle">facts told</text>')
    el.append(f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" '
              f'text-anchor="middle">recall (free greedy generation)</text>')
    for key, label, color in SERIES:
        for phase, dash in (("before_sleep", ' stroke-dasharray="5,4"'), ("after_sleep", "")):
            series = pts.get((key, phase), [])
            if not series:
                continue
            path = " ".join(f"{sx(n):.1f},{sy(v):.1f}" for n, v in series)
            el.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                      f'stroke-width="2"{dash}/>')
            el += [f'<circle cx="{sx(n):.1f}" cy="{sy(v):.1f}" r="3" fill="{color}"/>'
                   for n, v in series]
    for i, (key, label, color) in enumerate(SERIES):
        y = PAD + 8 + 16 * i
        el.append(f'<line x1="{W - PAD - 150}" x2="{W - PAD - 126}" y1="{y}" y2="{y}" '
                  f'stroke="{color}" stroke-width="2"/>')
        el.append(f'<text x="{W - PAD - 120}" y="{y + 4}">{label}</text>')
    y = PAD + 8 + 16 * len(SERIES)
    el.append(f'<text x="{W - PAD - 150}" y="{y + 4}">solid: after sleep; dashed: before</text>')
    el.append("</svg>")
    return "\n".join(el)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--out", default="docs/recall.svg")
    ap.add_argument("--title", default="sleepllm: recall vs facts told (default model)")
    a = ap.parse_args()
    reports = [json.loads(Path(p).read_text()) for p in a.reports]
    Path(a.out).write_text(svg(points(reports), a.title))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
