package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func TestKMSConfig(t *testing.T) {
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("4711\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const uri = "pkcs11:token=gatehouse;object=issuing"
	for _, c := range []struct {
		name    string
		set     map[string]string
		wantPIN string
		wantErr bool
	}{
		{"unset", nil, "", false},
		{"pin from config", map[string]string{keyKMS: uri, keyKMSPin: "1234"}, "1234", false},
		{"pin from file", map[string]string{keyKMS: uri, keyKMSPinFile: pinFile}, "4711", false},
		{"no pin", map[string]string{keyKMS: uri}, "", true},
		{"pin in the URI", map[string]string{keyKMS: uri + "?pin-value=1234", keyKMSPin: "1234"}, "", true},
		{"pin source in the URI", map[string]string{keyKMS: uri + "?pin-source=/tmp/p", keyKMSPin: "1234"}, "", true},
		{"not pkcs11", map[string]string{keyKMS: "awskms:key-id=x", keyKMSPin: "1"}, "", true},
		{"missing pin file", map[string]string{keyKMS: uri, keyKMSPinFile: pinFile + ".nope"}, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := viper.New()
			for k, val := range c.set {
				v.Set(k, val)
			}
			_, pin, err := kmsConfig(v)
			if c.wantErr != (err != nil) || err != nil && !fault.Is(err, fault.InvalidArgument) || pin != c.wantPIN {
				t.Fatalf("kmsConfig = %q, %v", pin, err)
			}
		})
	}
}
