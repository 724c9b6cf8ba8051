# Gatehouse default topic ACL.
#
# A policy grants rights to a device identity; Gatehouse matches each
# PUBLISH topic and SUBSCRIBE filter against the grants in Go, so this file
# is evaluated once per identity, not once per message.
#
# input.device: {id, fleet, profile, roles, labels}
# grants: a set of {"action": "publish"|"subscribe", "filter": <MQTT filter>,
#                   "max_qos": 0..2 (optional), "retain": bool (optional),
#                   "rule": <name shown as the decision's reason>}
package gatehouse.authz

# Topic namespace: every device topic sits under its fleet,
#   fleets/<fleet>/devices/<id>/{telemetry,state,events,cmd}/...
#   fleets/<fleet>/broadcast/...
# so "the devices of my fleet" is one MQTT filter and no grant below
# reaches another fleet. Fleet names are [A-Za-z0-9._-], device ids
# [A-Za-z0-9._:-]: they can be neither a wildcard nor span topic levels.
own := concat("/", ["fleets", input.device.fleet, "devices", input.device.id])

# Per-device isolation: a device writes only under its own subtree...
grants contains {"action": "publish", "filter": concat("/", [own, sub, "#"]), "rule": concat("", ["own-", sub])} if {
	some sub in {"telemetry", "state", "events"}
}

# ...reads only its own command topics and its fleet's broadcasts...
grants contains {"action": "subscribe", "filter": concat("/", [own, "cmd", "#"]), "rule": "own-commands"}

grants contains {"action": "subscribe", "filter": concat("/", ["fleets", input.device.fleet, "broadcast", "#"]), "rule": "fleet-broadcast"}

# ...and only a certificate that carries the command role may send commands,
# and only to the devices of its own fleet. A sensor's certificate never does.
grants contains {"action": "publish", "filter": concat("/", ["fleets", input.device.fleet, "devices", "+", "cmd", "#"]), "max_qos": 1, "retain": false, "rule": "command-role"} if {
	"command" in input.device.roles
}
