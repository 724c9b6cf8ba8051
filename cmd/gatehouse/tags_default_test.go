//go:build !pkcs11 || !cgo

package main

// binaryTags are the build tags of the binary under test.
const binaryTags = ""
