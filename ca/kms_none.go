//go:build !pkcs11 || !cgo

package ca

// KMSSupported reports whether PKCS#11 keys are compiled in.
const KMSSupported = false

func openKMSKey(uri, pin string) (kmsKey, error) { return kmsKey{}, errNoKMS }

func createKMSKey(uri, pin string) (kmsKey, error) { return kmsKey{}, errNoKMS }
