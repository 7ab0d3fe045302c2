"""Runs wrk with a generated Lua script that cycles a request mix and reports JSON.

wrk's own text output has no status-code breakdown and rounds latencies; the script's done()
prints one line, `BENCH-RESULT {json}`, with the HDR histogram's percentiles in microseconds, the
socket errors and the count of every status code (summed over wrk's threads).
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from pathlib import Path

from bench.load import LoadResult, Request, expand

log = logging.getLogger(__name__)

_MARK = "BENCH-RESULT "

_SCRIPT = r"""
local mix = { %(mix)s }
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  prepared = {}
  for i, r in ipairs(mix) do
    -- POSTs carry Content-Length: 0, as a browser or curl sends them.
    prepared[i] = wrk.format(r[1], r[2], nil, r[1] == "POST" and "" or nil)
  end
  position = (thread_id * 7919) %% #prepared
  statuses = {}
end

function request()
  position = position %% #prepared + 1
  return prepared[position]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do counts[code] = (counts[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(counts) do parts[#parts + 1] = string.format('"%%d": %%d', code, n) end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"duration_us": %%.0f, "requests": %%.0f, '
    .. '"errors": {"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d}, '
    .. '"latency_us": {"p50": %%.0f, "p90": %%.0f, "p99": %%.0f, "max": %%.0f}, "statuses": {%%s}}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
"""


def _lua_string(text: str) -> str:
    if any(c in text for c in '"\\\n\r'):
        raise ValueError(f"unexpected character in {text!r}")
    return f'"{text}"'


def lua_script(mix: list[Request]) -> str:
    """The wrk script for one request mix."""
    entries = ", ".join(f"{{{_lua_string(m)}, {_lua_string(p)}}}" for m, p in expand(mix))
    return _SCRIPT % {"mix": entries, "mark": _MARK}


def run_wrk(base_url: str, mix: list[Request], connections: int, seconds: float) -> LoadResult:
    """One wrk run: a single thread (it leaves the other core to the product), keep-alive connections."""
    duration = max(1, round(seconds))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "mix.lua"
        script.write_text(lua_script(mix))
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), base_url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    data = json.loads(lines[-1][len(_MARK) :])
    lat = data["latency_us"]
    return LoadResult(
        tool="wrk",
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        p50_ms=lat["p50"] / 1e3,
        p90_ms=lat["p90"] / 1e3,
        p99_ms=lat["p99"] / 1e3,
        max_ms=lat["max"] / 1e3,
        statuses={int(k): v for k, v in data["statuses"].items()},
        socket_errors={k: v for k, v in data["errors"].items() if v},
    )
