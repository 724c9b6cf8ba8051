package store

import "testing"

// TestSQLiteFilePath: the file whose mode is set before SQLite opens it is
// the one the DSN names; in-memory databases have none.
func TestSQLiteFilePath(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"/var/lib/gatehouse/gatehouse.db", "/var/lib/gatehouse/gatehouse.db"},
		{"data/what?.db", "data/what?.db"},
		{"file:/srv/g%3f.db?_pragma=busy_timeout(1)", "/srv/g?.db"},
		{"file:rel.db", "rel.db"},
		{":memory:", ""},
		{"file::memory:?cache=shared", ""},
		{"file:x.db?mode=memory", ""},
	} {
		if got := sqliteFilePath(tc.dsn); got != tc.want {
			t.Errorf("sqliteFilePath(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}
