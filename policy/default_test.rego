package gatehouse.authz_test

import data.gatehouse.authz

sensor := {"device": {"id": "temp-1", "fleet": "plant", "profile": "default", "roles": ["telemetry"], "labels": {}}}

controller := {"device": {"id": "ctl-1", "fleet": "plant", "profile": "default", "roles": ["command"], "labels": {}}}

test_sensor_publishes_own_telemetry if {
	{"action": "publish", "filter": "devices/temp-1/telemetry/#", "rule": "own-telemetry"} in authz.grants with input as sensor
}

test_sensor_cannot_command if {
	count([g | some g in authz.grants with input as sensor; g.action == "publish"; contains(g.filter, "cmd")]) == 0
}

test_controller_may_command if {
	some g in authz.grants with input as controller
	g.action == "publish"
	g.filter == "devices/+/cmd/#"
}

test_device_reads_own_commands_only if {
	subs := {g.filter | some g in authz.grants with input as sensor; g.action == "subscribe"}
	subs == {"devices/temp-1/cmd/#", "fleets/plant/broadcast/#"}
}
