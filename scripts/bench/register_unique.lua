-- registerAgent with the name inlined into the document, so that every document differs (no
-- parse or validation cache can help).
-- wrk -s register_unique.lua URL -- <bearer key> <name prefix>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_counts.lua")

local counter, prefix = 0, ""

function init(args)
  post_json(args)
  prefix = args[2]
end

function request()
  counter = counter + 1
  local name = string.format("%s-%d-%d-%d", prefix, tid, counter, math.random(1000000))
  local document = 'mutation { registerAgent(input: {name: \\"' .. name .. '\\", provider:'
    .. ' \\"grok\\", model: \\"grok-code-fast-1\\", temperature: 0.2}) { position agent'
    .. ' { id name provider model configVersion status } } }'
  return wrk.format(nil, nil, nil, '{"query":"' .. document .. '"}')
end
