-- protoprobe: a test helper, not a shipped plugin. It runs dns.parse,
-- tls.sni or tls.parse (options.mode = "dns", "sni" or "tls") on each
-- packet's payload and tags the packet with the result, serialized with
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
		if r == nil then
			pkt:tag("nil:" .. tostring(why))
		else
			pkt:tag(ser(r))
		end
	end,
}
