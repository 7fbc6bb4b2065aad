#!/usr/bin/env python3
"""Summarise a facegate-door replay: compare each decision in the event log with who was really
in the frame (frame files are named NNNN-PERSON-PHOTO.ext), print the figures, and write a
self-contained HTML report (plots embedded as data URIs). Standard library only.

Further replays of the same frames with another encoder are given as `replay=LABEL:LOG:DIR`
arguments among the plots; each gets a column beside the first."""
import base64, html, json, statistics, sys
from pathlib import Path

def replay_rows(log, members, out_dir):
    events = [json.loads(l) for l in Path(log).read_text().splitlines() if l.strip()]
    frames_of = {}
    for f in sorted(Path(out_dir, "frames").iterdir()):
        frames_of.setdefault(f.name.split("-")[1], 0)
        frames_of[f.name.split("-")[1]] += 1
    people = sorted(frames_of)
    granted, denied, wrong = {}, {}, []
    lat = []
    for e in events:
        if e.get("event") != "decision":
            continue
        person = e["frame"].split("-")[1]
        lat.append(e["latency_ms"])
        if e["decision"] == "granted":
            granted.setdefault(person, []).append(e["member"])
            if e["member"] != person:
                wrong.append((person, e["member"]))
        else:
            denied.setdefault(person, []).append(e.get("reason", "?"))
    enrolled = [p for p in people if p in members]
    strangers = [p for p in people if p not in members]
    true_accepts = [p for p in enrolled if p in granted and all(m == p for m in granted[p])]
    false_rejects = [p for p in enrolled if p not in granted]
    false_accepts = [p for p in strangers if p in granted] + [p for p, m in wrong if p in members]
    rows = {
        "frames replayed": sum(frames_of.values()),
        "grants": sum(len(v) for v in granted.values()),
        "logged denials": sum(len(v) for v in denied.values()),
        "enrolled people let in": f"{len(true_accepts)} of {len(enrolled)}",
        "false rejects (enrolled, never let in)": f"{len(false_rejects)} {false_rejects}",
        "false accepts (let in as someone else)": f"{len(false_accepts)} {false_accepts}",
        "strangers denied": f"{sum(1 for p in strangers if p not in granted)} of {len(strangers)}",
        "median decision latency (ms, deciding frame)": f"{statistics.median(lat):.1f}" if lat else "-",
    }
    return rows, events

def main(log, members_file, out_dir, report, *args):
    members = set(Path(members_file).read_text().split())
    pngs = [a for a in args if not a.startswith("replay=")]
    columns = [("trained encoder", *replay_rows(log, members, out_dir))]
    for a in args:
        if a.startswith("replay="):
            label, extra_log, extra_dir = a[len("replay="):].rsplit(":", 2)
            columns.append((label, *replay_rows(extra_log, members, extra_dir)))
    rows, events = columns[0][1], columns[0][2]
    width = max(map(len, rows))
    for label, r, _ in columns:
        if len(columns) > 1:
            print(f"  [{label}]")
        for k, v in r.items():
            print(f"  {k:<{width}}  {v}")
    imgs = "".join(
        f'<figure><img alt="{html.escape(Path(p).name)}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(p).read_bytes()).decode()}"><figcaption>{html.escape(p)}</figcaption></figure>'
        for p in pngs if Path(p).is_file()
    )
    head = "" if len(columns) == 1 else "<tr><th></th>" + "".join(f"<th>{html.escape(c[0])}</th>" for c in columns) + "</tr>"
    table = head + "".join(
        f"<tr><th>{html.escape(k)}</th>" + "".join(f"<td>{html.escape(str(c[1][k]))}</td>" for c in columns) + "</tr>"
        for k in rows)
    log_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(e.get(k, '')))}</td>" for k in
                         ("time", "event", "decision", "member", "distance", "reason", "latency_ms", "frame")) + "</tr>"
        for e in events if e.get("event") in ("decision", "gallery", "lock", "source"))
    Path(report).write_text(f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Facegate demo report</title><style>body{{font-family:sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
img{{max-width:100%}}figure{{display:inline-block;margin:1em}}</style>
<script>/* marks the page once every plot has decoded (checked by the render test in headless Chromium) */
addEventListener("load", () => {{ const i = [...document.images];
  document.body.dataset.plots = i.filter(x => x.complete && x.naturalWidth > 0).length + "/" + i.length; }});
</script></head><body>
<h1>Facegate demo</h1><h2 id="summary">Door replay</h2><table>{table}</table>
<h2>Plots</h2>{imgs or '<p>no plots</p>'}
<h2>Access log</h2><table><tr><th>time</th><th>event</th><th>decision</th><th>member</th>
<th>distance</th><th>reason</th><th>latency ms</th><th>frame</th></tr>{log_rows}</table></body></html>
""")
    print(f"  report: {report}")

if __name__ == "__main__":
    main(*sys.argv[1:])
