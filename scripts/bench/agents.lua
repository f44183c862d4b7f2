-- The first page of agents, one fixed document (wrk sends the same request every time).
-- wrk -s agents.lua URL -- <bearer key>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_counts.lua")

function init(args)
  post_json(args)
  wrk.body = '{"query":"{ agents(first: 50) { edges { node { id name provider model'
    .. ' configVersion status } } pageInfo { hasNextPage endCursor } } }"}'
end
