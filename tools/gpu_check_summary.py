#!/usr/bin/env python3
"""The summary table of tools/gpu_check.sh: steps, GPU tests, sanitizers, benchmarks.

    gpu_check_summary.py WORKDIR [OUTDIR]

WORKDIR is gpu_check.sh's working folder: steps.tsv, sanitizer_status.tsv, bench_status.tsv and
logs/ (device.log, tests.log = `ctest -L gpu -V`, memcheck_<test>.log, racecheck_<test>.log,
bench_*.json / bench_*.log = Google Benchmark JSON / console output). Prints the table; with
OUTDIR also writes OUTDIR/benchmarks.json (every program's JSON, merged). Standard library only.

Benchmarks (conventions of benchmarks/cuda/cuda_bench.cuh): the median of the repetitions; the
counters "flops" and "bytes" are rates (per second); a label "vs NAME" names the baseline. Each
row is shown against the ceilings measured in the same program (BM_ceiling/copy: bytes read +
written per second; BM_ceiling/gemm_bf16: FLOP/s), and against its baseline. Goals (issue 3):
memory-bound ops >= 80% of copy; pickscore's Linear >= 95% of raw cuBLASLt; attention >= 1.0x
cuDNN (a baseline whose name contains "cudnn"); a row with the counter "goal_max_seconds" (the
training step, issue 7: 0.6 s) meets its goal when its time is at most that. logs/torch.log (the
PyTorch baseline of the training step, tools/bench_torch.py --train --device cuda) adds its table.
"""
import json
import os
import re
import sys
import time

SUFFIX = re.compile(r"^(min_time|min_warmup_time|repeats|iterations|threads|real_time|manual_time|process_time)(:.*)?$")
SI = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


def base_name(run_name):
    parts = run_name.split("/")
    while len(parts) > 1 and SUFFIX.match(parts[-1]):
        parts.pop()
    return "/".join(parts)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_tsv(path):
    text = read(path) or ""
    return [line.split("\t") for line in text.splitlines() if line.strip()]


# ---- benchmarks ---------------------------------------------------------------------------------

def load_bench_json(path):
    """Google Benchmark's JSON; a file cut short by a killed run is repaired up to its last entry."""
    text = read(path)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    end = text.rfind("\n    }")
    while end > 0:
        try:
            return json.loads(text[: end + 6] + "\n  ]\n}")
        except ValueError:
            end = text.rfind("\n    }", 0, end)
    return None


def parse_console(text):
    """Rows from Google Benchmark's console output (used when the JSON is missing)."""
    rows = []
    for line in (text or "").splitlines():
        m = re.match(r"^(\S+)_median\s+([\d.]+) (ns|us|ms|s)\s+([\d.]+) (ns|us|ms|s)\s+(\d+)\s*(.*)$", line)
        if not m:
            continue
        entry = {"run_name": m.group(1), "run_type": "aggregate", "aggregate_name": "median",
                 "real_time": float(m.group(2)), "time_unit": m.group(3)}
        rest = m.group(7)
        for k, num, si in re.findall(r"(\w+)=([\d.]+)([kMGTP]?)(?:/s)?", rest):
            entry[k] = float(num) * SI[si]
        lm = re.search(r"(vs \S+)", rest)
        if lm:
            entry["label"] = lm.group(1)
        rows.append(entry)
    return {"context": {}, "benchmarks": rows} if rows else None


def bench_rows(data):
    """{base name: {"median": entry, "cv": entry, "error": message}} in the order of the file."""
    out = {}
    for b in data.get("benchmarks", []):
        name = base_name(b.get("run_name") or b.get("name", "?"))
        row = out.setdefault(name, {})
        if b.get("error_occurred"):
            row["error"] = b.get("error_message", "error")
        elif b.get("run_type") == "aggregate":
            row[b.get("aggregate_name", "?")] = b
        else:
            row.setdefault("iterations", []).append(b)
    for row in out.values():  # a single repetition has no aggregates: its run is the median
        if "median" not in row and row.get("iterations"):
            row["median"] = row["iterations"][len(row["iterations"]) // 2]
    return out


def to_seconds(value, unit):
    return value * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}.get(unit, 1e-9)


def fmt_time(seconds):
    if seconds >= 1e-1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


def rate_of(entry):
    """(kind, value per second): ("flops", FLOP/s) or ("bytes", B/s) or (None, None)."""
    if entry is None:
        return None, None
    if entry.get("flops"):
        return "flops", float(entry["flops"])
    if entry.get("bytes"):
        return "bytes", float(entry["bytes"])
    return None, None


def fmt_rate(kind, value):
    if kind == "flops":
        return f"{value / 1e12:.1f} TFLOP/s"
    if kind == "bytes":
        return f"{value / 1e9:.0f} GB/s"
    return "-"


def baseline_of(row):
    label = (row.get("median") or {}).get("label", "") or ""
    return label[3:].strip() if label.startswith("vs ") else ""


def display_order(rows):
    """Ceilings first, then by name, each baseline followed by the rows compared with it."""
    names = sorted(rows, key=lambda n: (not n.startswith("BM_ceiling/"), n))
    children = {}
    for n in names:
        b = baseline_of(rows[n])
        if b in rows and b != n:
            children.setdefault(b, []).append(n)
    order, seen = [], set()

    def emit(n):
        if n not in seen:
            seen.add(n)
            order.append(n)
            for c in children.get(n, []):
                emit(c)

    for n in names:
        if baseline_of(rows[n]) not in rows:
            emit(n)
    for n in names:  # anything left (a cycle of labels)
        emit(n)
    return order


def goal_of(name, baseline, kind):
    """(what, threshold): the goal this row is held to, or (None, None)."""
    if name.startswith("BM_ceiling/"):
        return None, None
    if baseline:
        if "cudnn" in baseline.lower():
            return "baseline", 1.0
        if "raw_lt" in baseline and "raw_lt" not in name:
            return "baseline", 0.95
        return None, None
    if kind == "bytes":
        return "copy", 0.80
    return None, None


def benchmark_section(work, outdir, lines):
    status = {r[0]: r[1:] for r in read_tsv(os.path.join(work, "bench_status.tsv"))}
    logs = os.path.join(work, "logs")
    programs = sorted({os.path.splitext(f)[0] for f in os.listdir(logs) if f.startswith("bench_")
                       and (f.endswith(".json") or f.endswith(".log"))} | set(status)) if os.path.isdir(logs) else sorted(status)
    merged, parsed = {}, {}
    for prog in programs:
        data = load_bench_json(os.path.join(logs, prog + ".json"))
        source = "json"
        if data is None:
            data = parse_console(read(os.path.join(logs, prog + ".log")))
            source = "console"
        if data is not None:
            merged[prog] = data
            parsed[prog] = (bench_rows(data), source)
    if outdir and merged:
        with open(os.path.join(outdir, "benchmarks.json"), "w", encoding="utf-8") as f:
            json.dump(merged, f, indent=1)

    # the ceilings of each program, and the first ones seen for programs without their own
    ceilings = {}
    for prog, (rows, _) in parsed.items():
        c = {}
        for key, bench in (("copy", "BM_ceiling/copy"), ("gemm", "BM_ceiling/gemm_bf16")):
            kind, value = rate_of(rows.get(bench, {}).get("median"))
            if value:
                c[key] = value
        ceilings[prog] = c
    fallback = {}
    for c in ceilings.values():
        for k, v in c.items():
            fallback.setdefault(k, v)

    lines.append("")
    parts = []
    for prog, c in ceilings.items():
        got = ([f"copy {c['copy'] / 1e9:.0f} GB/s"] if "copy" in c else []) + \
              ([f"gemm bf16 {c['gemm'] / 1e12:.0f} TFLOP/s"] if "gemm" in c else [])
        if got:
            parts.append(f"{prog}: " + ", ".join(got))
    lines.append("ceilings, measured in each program: " + ("; ".join(parts) if parts else "none"))
    if not programs:
        why = [line for line in (read(os.path.join(work, "logs", "bench.log")) or "").splitlines() if line.strip()]
        lines.append("benchmarks: no results" + (f" ({why[-1][:100]})" if why else ""))
    goals_met = goals_total = 0
    header = f"{'benchmark (median)':<56} {'time':>10} {'cv':>6} {'rate':>14} {'of ceiling':>11} {'vs baseline':>12} {'goal':>5}"
    for prog in programs:
        st = status.get(prog)
        note = ""
        if st:
            rc, secs = st[0], st[1] if len(st) > 1 else "?"
            note = {"0": f"ok, {secs}s", "124": f"TIMEOUT after {secs}s", "137": f"TIMEOUT after {secs}s",
                    "77": "skipped: no GPU", "skipped": "skipped: no time left"}.get(rc, f"FAILED (rc {rc}), {secs}s")
        lines.append("")
        if prog not in parsed:
            lines.append(f"{prog}: no results ({note or 'not run'})")
            continue
        rows, source = parsed[prog]
        lines.append(f"{prog} ({note}{'; from the console log' if source == 'console' else ''})")
        lines.append(header)
        ceil = dict(fallback, **ceilings.get(prog, {}))
        for name in display_order(rows):
            row = rows[name]
            short = name[:56]
            if "error" in row:
                lines.append(f"{short:<56} ERROR: {row['error'][:80]}")
                continue
            med = row.get("median")
            if med is None:
                lines.append(f"{short:<56} (no median)")
                continue
            secs = to_seconds(float(med.get("real_time", 0)), med.get("time_unit", "ns"))
            cv = row.get("cv")
            cv_s = f"{100 * float(cv['real_time']):.1f}%" if cv and "real_time" in cv else "-"
            kind, value = rate_of(med)
            of_ceiling = "-"
            if kind == "bytes" and ceil.get("copy"):
                of_ceiling = f"{100 * value / ceil['copy']:.0f}% copy"
            elif kind == "flops" and ceil.get("gemm"):
                of_ceiling = f"{100 * value / ceil['gemm']:.0f}% gemm"
            label = med.get("label", "") or ""
            baseline = label[3:].strip() if label.startswith("vs ") else ""
            vs = "-"
            ratio = None
            if baseline:
                bkind, bvalue = rate_of(rows.get(baseline, {}).get("median"))
                if bvalue and bkind == kind and value:
                    ratio = value / bvalue
                    vs = f"{ratio:.3f}x"
                else:
                    vs = "no baseline"
            what, threshold = goal_of(name, baseline, kind)
            goal = "-"
            if what == "copy" and ceil.get("copy") and value:
                ok = value / ceil["copy"] >= threshold
                goal, goals_total, goals_met = ("ok" if ok else "MISS"), goals_total + 1, goals_met + ok
            elif what == "baseline" and ratio is not None:
                ok = ratio >= threshold
                goal, goals_total, goals_met = ("ok" if ok else "MISS"), goals_total + 1, goals_met + ok
            elif med.get("goal_max_seconds"):
                ok = secs <= float(med["goal_max_seconds"])
                goal, goals_total, goals_met = ("ok" if ok else "MISS"), goals_total + 1, goals_met + ok
            lines.append(f"{short:<56} {fmt_time(secs):>10} {cv_s:>6} {fmt_rate(kind, value):>14} {of_ceiling:>11} "
                         f"{vs:>12} {goal:>5}")
    return goals_met, goals_total


def torch_section(work, lines):
    """The table tools/bench_torch.py printed in the torch step (nothing when the step did not run)."""
    text = read(os.path.join(work, "logs", "torch.log"))
    if text is None:
        return
    lines.append("")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    notes = [line for line in text.splitlines() if line.startswith(("torch:", "bench_torch:"))]
    lines.append("PyTorch baseline of the training step (tools/bench_torch.py --train --device cuda):")
    # the table is printed last: a run cut short leaves only the per-variant lines
    partial = [line for line in notes if line.startswith("torch: micro")]
    lines.extend(notes[:1] + (rows or partial or notes[1:][-3:] or ["(no results in torch.log)"]))


# ---- tests --------------------------------------------------------------------------------------

def tests_section(work, lines):
    text = read(os.path.join(work, "logs", "tests.log"))
    lines.append("")
    if text is None:
        lines.append("GPU tests (ctest -L gpu): not run")
        return None
    names, cases, results = {}, {}, []
    for line in text.splitlines():
        m = re.match(r"^\s*\d+/\d+ Test\s+#(\d+): (\S+) \.*\s*(?:\*\*\*)?(.*?)\s+([\d.]+) sec", line)
        if m:
            names[m.group(1)] = m.group(2)
            results.append((m.group(1), m.group(2), m.group(3).strip(), m.group(4)))
            continue
        m = re.match(r"^(\d+): \[doctest\] test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed", line)
        if m:
            cases[m.group(1)] = (int(m.group(3)), int(m.group(4)))
    lines.append(f"{'GPU test program (ctest -L gpu)':<40} {'result':<12} {'test cases passed/failed':>25} {'time':>9}")
    failed = 0
    for num, name, result, secs in results:
        c = cases.get(num)
        if result not in ("Passed", "Skipped"):
            failed += 1
        lines.append(f"{name:<40} {result:<12} {(f'{c[0]}/{c[1]}' if c else '-'):>25} {secs + ' s':>9}")
    m = re.search(r"(\d+)% tests passed, (\d+) tests? failed out of (\d+)", text)
    if m:
        lines.append(f"total: {m.group(3)} programs, {m.group(2)} failed")
    elif not results:
        lines.append("(no test results in tests.log)")
    return failed


# ---- sanitizers ---------------------------------------------------------------------------------

def sanitizer_cell(tool, rc, secs, log):
    if rc in ("skipped", "not built"):
        return rc
    if rc == "77":
        return "skipped (no GPU, or too few)"
    text = log or ""
    if re.search(r"Device not supported|not supported on this device|Unable to find injection", text):
        return "unavailable"
    if tool == "memcheck":
        m = re.search(r"ERROR SUMMARY: (\d+) error", text)
        count = int(m.group(1)) if m else len(re.findall(r"^=+ Invalid ", text, re.M))
        what = "errors"
    else:
        m = re.search(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", text)
        if m:
            count = int(m.group(2)) + int(m.group(3))
        else:
            m = re.search(r"ERROR SUMMARY: (\d+) error", text)
            count = int(m.group(1)) if m else len(re.findall(r"^=+ (?:Error|Warning): Race", text, re.M))
        what = "hazards"
    tests_failed = re.search(r"\[doctest\] Status: FAILURE", text) is not None
    if rc in ("124", "137"):
        return f"TIMEOUT {secs}s ({count} {what} before)"
    cell = f"{count} {what}" if (m or rc == "0") else f"rc {rc}, {count} {what} seen"
    if tests_failed:
        cell += ", tests FAILED"
    return f"{cell} ({secs}s)"


def sanitizer_section(work, lines):
    rows = read_tsv(os.path.join(work, "sanitizer_status.tsv"))
    lines.append("")
    if not rows:
        why = [line for line in (read(os.path.join(work, "logs", "memcheck.log")) or "").splitlines() if line.strip()]
        lines.append("sanitizers: no results" + (f" ({why[-1][:100]})" if why else ""))
        return 0
    table, order = {}, []
    for r in rows:
        tool, name, rc, secs = (r + ["?", "?", "?", "?"])[:4]
        if name not in table:
            order.append(name)
        table.setdefault(name, {})[tool] = sanitizer_cell(
            tool, rc, secs, read(os.path.join(work, "logs", f"{tool}_{name}.log")))
    lines.append(f"{'compute-sanitizer':<40} {'memcheck':<36} {'racecheck (pickscore kernels)':<36}")
    bad = 0
    for name in order:
        mc, rcc = table[name].get("memcheck", "-"), table[name].get("racecheck", "-")
        bad += any(not re.match(r"^0 (errors|hazards)", c) and c not in ("-", "skipped (no GPU, or too few)")
                   for c in (mc, rcc))
        lines.append(f"{name:<40} {mc:<36} {rcc:<36}")
    return bad


# ---- the whole table ----------------------------------------------------------------------------

def device_line(work):
    text = read(os.path.join(work, "logs", "device.log")) or ""
    m = re.search(r"^name, driver_version[^\n]*\n([^#\n][^\n]*)", text, re.M)
    return m.group(1).strip() if m else "device: unknown (nvidia-smi gave no answer; see device.log)"


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    work = argv[1]
    outdir = argv[2] if len(argv) > 2 else None
    lines = [f"==== pickscore gpu_check summary, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ====",
             device_line(work), ""]
    steps = read_tsv(os.path.join(work, "steps.tsv"))
    lines.append(f"{'step':<12} {'result':<9} {'time':>6}  note")
    for r in steps:
        name, result, secs, note = (r + ["", "", "", ""])[:4]
        lines.append(f"{name:<12} {result:<9} {secs + 's':>6}  {note}")
    failed_tests = tests_section(work, lines)
    bad_sanitizer = sanitizer_section(work, lines)
    goals_met, goals_total = benchmark_section(work, outdir, lines)
    torch_section(work, lines)
    not_ok = [r[0] for r in steps if len(r) > 1 and r[1] != "ok"]
    lines.append("")
    lines.append("RESULT: " + ("all steps ok" if not not_ok else "steps not ok: " + ", ".join(not_ok))
                 + (f"; GPU test programs failed: {failed_tests}" if failed_tests else "")
                 + (f"; programs with sanitizer findings or incomplete runs: {bad_sanitizer}" if bad_sanitizer else "")
                 + f"; goals met: {goals_met} of {goals_total}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
