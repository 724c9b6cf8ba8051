package ca

import (
	"crypto"
	"strings"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// The issuing key may live in a PKCS#11 token instead of the encrypted
// intermediate_ca.key: Config.KMS and InitConfig.KMS take a PKCS#11 URI
// naming the key (token, id, object) and the module; the PIN comes
// separately (KMSPin), never in the URI a config file or log would show.
// The token path is compiled in with the build tag pkcs11 (kms_pkcs11.go,
// cgo); without it a KMS URI is refused at start (kms_none.go).

// kmsKey is a signer in a token, and how to let go of the token.
type kmsKey struct {
	signer crypto.Signer
	close  func() error
}

// errNoKMS is the answer of a build without the pkcs11 tag.
var errNoKMS = fault.New(fault.InvalidArgument, "this gatehouse was built without PKCS#11 support (build tag pkcs11)")

// redactURI drops a PKCS#11 URI's query (pin-value would be there).
func redactURI(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i]
	}
	return uri
}
