-- wrk script of the benchmark (benchmarks/wrk.py): POST one body, again and again, and print wrk's
-- figures as one JSON line at the end. The request comes from the environment:
--   BENCH_WRK_BODY          file holding the body (read once per wrk thread)
--   BENCH_WRK_CONTENT_TYPE  its Content-Type
--   BENCH_WRK_ACCEPT        Accept header (optional)
--   BENCH_WRK_METHOD        method (POST unless set)
--   BENCH_WRK_HEADER        one more header, "Name: value" (optional; V2 binary bodies' JSON length)

function init(args)
   local f = assert(io.open(assert(os.getenv("BENCH_WRK_BODY"), "BENCH_WRK_BODY is not set"), "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.method = os.getenv("BENCH_WRK_METHOD") or "POST"
   wrk.headers["Content-Type"] = assert(os.getenv("BENCH_WRK_CONTENT_TYPE"), "BENCH_WRK_CONTENT_TYPE is not set")
   local accept = os.getenv("BENCH_WRK_ACCEPT")
   if accept and accept ~= "" then
      wrk.headers["Accept"] = accept
   end
   local extra = os.getenv("BENCH_WRK_HEADER")
   if extra and extra ~= "" then
      local name, value = extra:match("^([^:]+):%s*(.*)$")
      wrk.headers[name] = value
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "rps": %.3f, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %.1f, "p90": %.1f, "p99": %.1f, "mean": %.1f, "max": %.1f}}\n',
      summary.requests, summary.duration, seconds > 0 and summary.requests / seconds or 0, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
