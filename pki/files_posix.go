//go:build !windows

package pki

import (
	"fmt"
	"os"
)

// checkPrivateFileMode refuses a private key file that group or others may
// read, write or execute: a key someone else could read is not private, and
// one someone else could write can be replaced with theirs.
func checkPrivateFileMode(path string, mode os.FileMode) error {
	if perm := mode.Perm(); perm&0o077 != 0 {
		return fmt.Errorf("private key file %s has mode %#o and is accessible by group or others; run chmod 600 %s", path, perm, path)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
