-- wrk script for benchmarks/bench_serving.py: POST one TokenReview (the JSON body read from the file named by the
-- first script argument, `wrk ... -- BODY_FILE`) to /authn/tokenreviews on every keep-alive connection, and count
-- the answers that are not 200 with "authenticated":true. wrk itself only counts non-2xx/3xx answers and socket
-- errors; a 200 that did not authenticate would pass it unseen.
--
-- done() prints one line the benchmark parses: "kagiya-answers OK BAD FIRST_BAD" (FIRST_BAD: the status and the
-- start of the body of one bad answer, or "-").

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.path = "/authn/tokenreviews"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  ok, bad, first_bad = 0, 0, "-"
end

function response(status, headers, body)
  if status == 200 and body:find('"authenticated":true', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if first_bad == "-" then
      first_bad = status .. " " .. string.sub(string.gsub(body or "", "%s+", " "), 1, 200)
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, first = 0, 0, "-"
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_bad = total_bad + thread:get("bad")
    if first == "-" then
      first = thread:get("first_bad")
    end
  end
  io.write(string.format("kagiya-answers %d %d %s\n", total_ok, total_bad, first))
end
