-- One device publishing the same telemetry topic: every decision after the
-- first comes from the cache.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Gatehouse-Hook-Secret"] = os.getenv("HOOKBENCH_SECRET")
wrk.body = '{"clientid":"dev-000042","username":"dev-000042","cert_common_name":"dev-000042","action":"publish","topic":"fleets/plant/devices/dev-000042/telemetry/temp","qos":"1","retain":"false"}'
