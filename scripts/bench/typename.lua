-- The edge's floor: `{ __typename }` with the bearer key, one fixed document — the HTTP server,
-- authentication, the document caches, the cost limit and the executor, and no resolver, no
-- store, no event. wrk -s typename.lua URL -- <bearer key>
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_counts.lua")

function init(args)
  post_json(args)
  wrk.body = '{"query":"{ __typename }"}'
end
