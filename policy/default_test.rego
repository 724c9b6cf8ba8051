package gatehouse.authz_test

import data.gatehouse.authz

sensor := {"device": {"id": "temp-1", "fleet": "plant", "profile": "default", "roles": ["telemetry"], "labels": {}}}

controller := {"device": {"id": "ctl-1", "fleet": "plant", "profile": "default", "roles": ["command"], "labels": {}}}

test_sensor_publishes_own_telemetry if {
	{"action": "publish", "filter": "fleets/plant/devices/temp-1/telemetry/#", "rule": "own-telemetry"} in authz.grants with input as sensor
}

test_sensor_cannot_command if {
	count([g | some g in authz.grants with input as sensor; g.action == "publish"; contains(g.filter, "cmd")]) == 0
}

test_controller_commands_its_fleet_only if {
	cmds := {g.filter | some g in authz.grants with input as controller; g.action == "publish"; contains(g.filter, "cmd")}
	cmds == {"fleets/plant/devices/+/cmd/#"}
}

test_controller_of_another_fleet_commands_that_fleet_only if {
	other := object.union(controller, {"device": object.union(controller.device, {"fleet": "depot"})})
	cmds := {g.filter | some g in authz.grants with input as other; g.action == "publish"; contains(g.filter, "cmd")}
	cmds == {"fleets/depot/devices/+/cmd/#"}
}

test_every_grant_stays_in_the_fleet if {
	grants := authz.grants with input as controller
	every g in grants {
		startswith(g.filter, "fleets/plant/")
	}
}

test_device_reads_own_commands_only if {
	subs := {g.filter | some g in authz.grants with input as sensor; g.action == "subscribe"}
	subs == {"fleets/plant/devices/temp-1/cmd/#", "fleets/plant/broadcast/#"}
}
