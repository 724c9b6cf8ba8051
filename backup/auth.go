package backup

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Codes of an archive that fails its authentication.
const (
	// Tampered: the manifest's MAC does not verify (the archive was
	// altered, or the passphrase is not the one it was written with), is
	// missing from a format 2 archive, or a file does not match the
	// manifest, or the archive is truncated.
	Tampered fault.Code = "backup_tampered"
	// Unauthenticated: a format 1 archive (written before the MAC) read
	// without Verify.AcceptUnauthenticated.
	Unauthenticated fault.Code = "backup_unauthenticated"
)

// The MAC key: PBKDF2-HMAC-SHA256 stretches the passphrase (with the
// manifest's random salt, as many rounds as the CA key files' PBES2 use),
// then HKDF-SHA256 with a fixed info string derives the key for this one
// purpose. Without the stretch the MAC would be a far cheaper test of a
// guessed passphrase than the encrypted keys in the same archive; the
// info string keeps the key apart from anything else derived from the
// passphrase.
const (
	saltLen       = 16
	kdfIterations = 600_000
	macKeyInfo    = "gatehouse backup manifest HMAC-SHA256 v1"
	macLen        = sha256.Size
)

// Verify is what Extract authenticates an archive with.
type Verify struct {
	// Passphrase is the CA passphrase the backup was written with.
	Passphrase []byte
	// AcceptUnauthenticated reads a format 1 archive, which has no MAC:
	// whoever could write it could have changed anything in it.
	AcceptUnauthenticated bool
}

func macKey(passphrase, salt []byte) ([]byte, error) {
	stretched, err := pbkdf2.Key(sha256.New, string(passphrase), salt, kdfIterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	return hkdf.Key(sha256.New, stretched, nil, macKeyInfo, sha256.Size)
}

func manifestMAC(key, manifest []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(manifest)
	return h.Sum(nil)
}

// authenticate checks the manifest's MAC (mac is the MACName entry, nil
// when absent) over raw, the manifest's bytes as archived.
func authenticate(m Manifest, raw, mac []byte, v Verify) error {
	switch {
	case m.Format == FormatUnauthenticated && mac == nil && m.MACSalt == nil:
		if !v.AcceptUnauthenticated {
			return fault.New(Unauthenticated, "backup archive: format %d has no MAC, so nothing shows it was not altered: "+
				"restore it only with --accept-unauthenticated, and only if it was kept where nobody else could write it", m.Format)
		}
		return nil
	case m.Format == FormatUnauthenticated:
		return fault.New(Tampered, "backup archive: a format %d manifest with MAC parts: the archive was altered", m.Format)
	case mac == nil:
		return fault.New(Tampered, "backup archive: the manifest's MAC is missing: the archive was altered or truncated")
	case len(m.MACSalt) != saltLen:
		return fault.New(Tampered, "backup archive: the manifest's MAC salt is malformed: the archive was altered")
	case len(v.Passphrase) == 0:
		return fault.New(fault.InvalidArgument, "backup archive: the CA passphrase is required to authenticate it")
	}
	key, err := macKey(v.Passphrase, m.MACSalt)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(strings.TrimSpace(string(mac)))
	if err != nil || len(got) != macLen || !hmac.Equal(got, manifestMAC(key, raw)) {
		return fault.New(Tampered, "backup archive: the manifest's MAC does not verify: the archive was altered, "+
			"or the CA passphrase is not the one it was written with")
	}
	return nil
}
