-- registerAgent with ONE fixed document and the input in variables; every name unique (the
-- run's prefix, the thread and a counter, plus a random part).
-- wrk -s register.lua URL -- <bearer key> <name prefix>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_counts.lua")

local document = "mutation Register($input: RegisterAgentInput!) { registerAgent(input: $input)"
  .. " { position agent { id name provider model configVersion status } } }"
local counter, prefix = 0, ""

function init(args)
  post_json(args)
  prefix = args[2]
end

function request()
  counter = counter + 1
  local name = string.format("%s-%d-%d-%d", prefix, tid, counter, math.random(1000000))
  local body = '{"query":"' .. document .. '","variables":{"input":{"name":"' .. name
    .. '","provider":"grok","model":"grok-code-fast-1","temperature":0.2}}}'
  return wrk.format(nil, nil, nil, body)
end
