-- wrk script: POST one chat completion request per wrk request, report one JSON line.
--
-- Environment:
--   BENCH_BODY     the JSON request body (default: a small request for model "bench")
--   BENCH_STREAM   "1": with the default body, ask for a streamed answer
--   BENCH_API_KEY  when set, sent as "Authorization: Bearer <key>"
--   BENCH_HEADERS  extra headers, one "Name: value" per line
--
-- done() prints one line "BENCH_RESULT {...}" with requests/s, latency percentiles in
-- milliseconds and the error counts, for the caller to parse.

local body = os.getenv("BENCH_BODY")
if body == nil or body == "" then
  if os.getenv("BENCH_STREAM") == "1" then
    body = '{"model":"bench","messages":[{"role":"user","content":"Hello"}],"stream":true}'
  else
    body = '{"model":"bench","messages":[{"role":"user","content":"Hello"}]}'
  end
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local extra = os.getenv("BENCH_HEADERS")
if extra ~= nil then
  for line in extra:gmatch("[^\n]+") do
    local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
    if name ~= nil then
      wrk.headers[name] = value
    end
  end
end

local function ms(us)
  return us / 1000.0
end

function done(summary, latency, requests)
  local errors = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_s":%.6f,"rps":%.3f,' ..
    '"p50_ms":%.4f,"p90_ms":%.4f,"p99_ms":%.4f,"mean_ms":%.4f,"max_ms":%.4f,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
    ms(latency.mean), ms(latency.max),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
