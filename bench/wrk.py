"""wrk (a C HTTP load generator, `apt-get install wrk`) driven from the benchmarks.

A Lua script gives every request its method, body and headers and counts the responses by
status in wrk itself; the run id of each 200 is kept, so a benchmark can check that each
accepted trigger became exactly one run. wrk's own latency distribution (`--latency`) gives
the percentiles.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

INSTALL = "sudo apt-get install -y wrk (or `make wrk`)"
THREADS = 2  # one per core of the machine the figures are measured on

SCRIPT = """
wrk.method = {method}
wrk.body = {body}
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {{}}; ids = {{}} end
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 200 then
    local id = body:match('"id": *"([^"]+)"')
    if id then ids[#ids + 1] = id end
  end
end
function done(summary, latency, requests)
  local out = io.open({tally}, "w")
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do out:write("status ", status, " ", count, "\\n") end
    for _, id in ipairs(thread:get("ids")) do out:write("id ", id, "\\n") end
  end
  out:close()
end
"""


class WrkMissing(RuntimeError):
    pass


@dataclass
class WrkResult:
    requests: int  # responses of any status, as wrk counts them
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: Counter[int]
    socket_errors: str  # wrk's "Socket errors: ..." line, "" when there were none
    ids: list[str] = field(repr=False)  # the "id" of every 200's JSON body

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def executable() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(f"the HTTP figures need wrk, a C load generator: {INSTALL}")
    return path


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    threads: int = THREADS,
) -> WrkResult:
    """Load url for `seconds` from `connections` keep-alive connections over `threads` threads."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        tally = Path(tmp) / "tally.txt"
        script = Path(tmp) / "script.lua"
        script.write_text(
            SCRIPT.format(
                method=lua_string(method),
                body=lua_string(body.decode()) if body else "nil",
                headers="\n".join(
                    f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in (headers or {}).items()
                ),
                tally=lua_string(str(tally)),
            )
        )
        argv = [executable(), f"-t{min(threads, connections)}", f"-c{connections}", f"-d{whole(seconds)}s"]
        argv += ["--latency", "--timeout", "30s", "-s", str(script), url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
        if done.returncode != 0 or not tally.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse(done.stdout, tally.read_text())


def whole(seconds: float) -> int:
    """wrk takes whole seconds only (-d0.5s is refused): at least 1."""
    return max(1, round(seconds))


def parse(output: str, tally: str) -> WrkResult:
    """wrk's --latency report and the Lua script's tally of statuses and ids."""
    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", output)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[found.group(3)]
    statuses: Counter[int] = Counter()
    ids: list[str] = []
    for line in tally.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "status":
            code, count = rest.split()
            statuses[int(code)] += int(count)
        elif kind == "id":
            ids.append(rest)
    errors = re.search(r"Socket errors: .*", output)
    return WrkResult(
        requests=int(found.group(1)),
        seconds=float(found.group(2)) * unit,
        p50_ms=percentile(output, "50%"),
        p99_ms=percentile(output, "99%"),
        statuses=statuses,
        socket_errors=errors.group(0) if errors else "",
        ids=ids,
    )


def percentile(output: str, label: str) -> float:
    """A line of wrk's latency distribution (`     99%  201.78ms`), in ms."""
    found = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if found is None:
        return 0.0
    return float(found.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[found.group(2)]
