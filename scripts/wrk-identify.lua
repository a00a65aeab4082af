-- wrk script: single identifies to /v1/identify, each with its own messageId.
--   wrk -t2 -c64 -d10s --latency -s scripts/wrk-identify.lua http://127.0.0.1:8080 -- <write key>
local threads = 0
function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

function init(args)
  key = args[1] or ""
  count = 0
  run = tostring(os.time())
end

function request()
  count = count + 1
  local user = (count * 7919 + thread_id) % 100000
  local body = string.format(
    '{"type":"identify","messageId":"wrk-%s-%d-%d","userId":"user_%d","timestamp":"2024-05-%02dT10:00:00Z",'
      .. '"traits":{"email":"user%d@example.com","name":"User %d","plan":"team"},'
      .. '"context":{"library":{"name":"analytics-node","version":"2.1.0"},"ip":"10.0.0.1"}}',
    run, thread_id, count, user, 1 + count % 28, user, user)
  return wrk.format("POST", "/v1/identify",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, body)
end
