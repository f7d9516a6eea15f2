package pki

import "os"

// checkPrivateFileMode accepts every file on Windows: access there is governed
// by ACLs, which os.FileMode does not describe (it reflects only the read-only
// attribute). Restricting the data directory's ACL is the installer's job.
func checkPrivateFileMode(string, os.FileMode) error { return nil }

// syncDir is a no-op on Windows, where a directory cannot be opened and synced
// like a file; the rename that precedes it is still atomic.
func syncDir(string) error { return nil }
