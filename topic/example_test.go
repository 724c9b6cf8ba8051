package topic_test

import (
	"fmt"

	"github.com/gatehouse-iot/gatehouse/topic"
)

// A broker hook authorising a SUBSCRIBE: validate, strip the shared
// subscription group, then check the filter lies inside an allowed one.
func ExampleContains() {
	allowed := []string{"devices/dev-123/#", "fleet/+/announce"}
	for _, requested := range []string{
		"$share/workers/devices/dev-123/cmd/+",
		"devices/+/cmd/#",
		"#",
	} {
		if err := topic.ValidateFilter(requested); err != nil {
			fmt.Println(requested, err)
			continue
		}
		_, inner, _ := topic.SplitShared(requested)
		ok := false
		for _, a := range allowed {
			ok = ok || topic.Contains(a, inner)
		}
		fmt.Println(requested, ok)
	}
	// Output:
	// $share/workers/devices/dev-123/cmd/+ true
	// devices/+/cmd/# false
	// # false
}

func ExampleMatch() {
	fmt.Println(topic.Match("devices/+/telemetry/#", "devices/dev-123/telemetry"))
	fmt.Println(topic.Match("#", "$SYS/broker/uptime"))
	fmt.Println(topic.Match("a/b", "a/b/c"))
	// Output:
	// true
	// false
	// false
}
