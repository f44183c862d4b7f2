-- Shared by the api scenario's wrk scripts (loaded with dofile): POSTs JSON with the bearer
-- key given as the script's first argument, numbers the threads, and counts the responses that
-- are not a success — a non-2xx status, or a body with GraphQL "errors" — so that a run with
-- errors is reported as such and not counted as throughput. done() prints one line
-- "bench-counts responses=N non2xx=N graphql_errors=N" and, if any, "bench-sample <body>".

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

responses, non2xx, graphql_errors, sample = 0, 0, 0, ""

function post_json(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  math.randomseed(os.time() * 1000 + tid)
end

function response(status, headers, body)
  responses = responses + 1
  local failed = false
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    failed = true
  elseif body:find('"errors"', 1, true) then
    graphql_errors = graphql_errors + 1
    failed = true
  end
  if failed and sample == "" then
    sample = status .. " " .. body:sub(1, 400):gsub("%s+", " ")
  end
end

function done(summary, latency, requests)
  local r, n, g, s = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    r = r + thread:get("responses")
    n = n + thread:get("non2xx")
    g = g + thread:get("graphql_errors")
    if s == "" then s = thread:get("sample") end
  end
  io.write(string.format("bench-counts responses=%d non2xx=%d graphql_errors=%d\n", r, n, g))
  if s ~= "" then io.write("bench-sample " .. s .. "\n") end
end
