package ca

import (
	"errors"
	"os"
	"path/filepath"
)

// VerifiedLen is how many certificates the verified-certificate cache holds.
func (c *CA) VerifiedLen() int { return c.verified.len() }

// FailRename makes the rename onto a file named dst fail until the returned
// function restores os.Rename.
func FailRename(dst string) (restore func()) {
	renameFile = func(from, to string) error {
		if filepath.Base(to) == dst {
			return errors.New("injected rename failure")
		}
		return os.Rename(from, to)
	}
	return func() { renameFile = os.Rename }
}
