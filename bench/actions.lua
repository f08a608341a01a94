-- wrk script: POST /api/activities/actions as many employees at once, each request with its own
-- Idempotency-Key and a trip time that cannot overlap the same employee's other trips.
-- Filled in by bench/run.py: TOKENS, BASE_EPOCH, KEY_PREFIX, THREADS.
local tokens = {TOKENS}
local base = BASE_EPOCH
local key_prefix = "KEY_PREFIX"
local threads = THREADS
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local counter = 0

function request()
  counter = counter + 1
  local seq = counter * threads + tid
  local token = tokens[(seq % #tokens) + 1]
  local occurred = os.date("!%Y-%m-%dT%H:%M:%S+00:00", base - seq * 3)
  local body = '{"type":"commute","mode":"bus","distance_km":1,"occurred_at":"' .. occurred .. '"}'
  return wrk.format("POST", "/api/activities/actions", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key_prefix .. "-" .. tid .. "-" .. counter,
  }, body)
end
