-- Every request a new (device, topic) pair: every decision is a cache miss
-- (grants per device are computed once, on the device's first request).
local n = 0
local headers = {["Content-Type"] = "application/json", ["X-Gatehouse-Hook-Secret"] = os.getenv("HOOKBENCH_SECRET")}
request = function()
  n = n + 1
  local dev = string.format("dev-%06d", n % 100000)
  local body = string.format('{"clientid":"%s","username":"%s","cert_common_name":"%s","action":"publish","topic":"fleets/plant/devices/%s/telemetry/t%d","qos":"1","retain":"false"}', dev, dev, dev, dev, n)
  return wrk.format("POST", "/hooks/emqx/authz", headers, body)
end
