-- protoprobe: a test helper, not a shipped plugin. It runs dns.parse,
-- tls.sni or tls.parse (options.mode = "dns", "sni" or "tls") on each
-- packet's payload and logs the result (field r), serialized with
-- sorted keys ("nil:REASON" when the function returned nil), so that tests
-- can assert on what scripts see.

local mode = fw.options.mode or "dns"

local function ser(v)
	if type(v) ~= "table" then
		return tostring(v)
	end
	local keys = {}
	for k in pairs(v) do
		keys[#keys + 1] = k
	end
	table.sort(keys, function(a, b)
		return tostring(a) < tostring(b)
	end)
	local parts = {}
	for _, k in ipairs(keys) do
		if type(k) == "number" then
			parts[#parts + 1] = ser(v[k])
		else
			parts[#parts + 1] = k .. "=" .. ser(v[k])
		end
	end
	return "{" .. table.concat(parts, ",") .. "}"
end

fw.register{
	hook = "input",
	fn = function(pkt)
		local payload = pkt.payload
		local r, why
		if mode == "dns" then
			r, why = dns.parse(payload)
		elseif mode == "sni" then
			r, why = tls.sni(payload)
		else
			r, why = tls.parse(payload)
		end
		-- The result goes out as a log field: a tag is at most 128 bytes.
		if r == nil then
			log.info("probe", { r = "nil:" .. tostring(why) })
		else
			log.info("probe", { r = ser(r) })
		end
	end,
}
