//go:build pkcs11 && cgo

package ca

import (
	"context"
	"fmt"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// KMSSupported reports whether PKCS#11 keys are compiled in.
const KMSSupported = true

func openKMS(uri, pin string) (*pkcs11.PKCS11, error) {
	k, err := pkcs11.New(context.Background(), apiv1.Options{Type: apiv1.PKCS11, URI: uri, Pin: pin})
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "open PKCS#11 token: %v", err)
	}
	return k, nil
}

// openKMSKey finds the issuing key named by uri in its token.
func openKMSKey(uri, pin string) (kmsKey, error) {
	k, err := openKMS(uri, pin)
	if err != nil {
		return kmsKey{}, err
	}
	s, err := k.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: uri})
	if err != nil {
		_ = k.Close()
		return kmsKey{}, fault.Wrap(err, fault.InvalidArgument, "PKCS#11 key %s: %v", redactURI(uri), err)
	}
	return kmsKey{signer: s, close: k.Close}, nil
}

// createKMSKey generates a P-256 key inside the token, sensitive and not
// extractable: its private part never leaves the token.
func createKMSKey(uri, pin string) (kmsKey, error) {
	k, err := openKMS(uri, pin)
	if err != nil {
		return kmsKey{}, err
	}
	resp, err := k.CreateKey(&apiv1.CreateKeyRequest{Name: uri, SignatureAlgorithm: apiv1.ECDSAWithSHA256})
	if err != nil {
		_ = k.Close()
		return kmsKey{}, fmt.Errorf("create the issuing key in the token: %w", err)
	}
	s, err := k.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		_ = k.Close()
		return kmsKey{}, err
	}
	return kmsKey{signer: s, close: k.Close}, nil
}
