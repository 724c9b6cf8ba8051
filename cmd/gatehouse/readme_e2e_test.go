package main

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readmeBlock returns the first ```sh block after the README heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var block []string
	state := 0 // 0: looking for the heading, 1: for the block, 2: in it
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && line == heading:
			state = 1
		case state == 1 && line == "```sh":
			state = 2
		case state == 2 && line == "```":
			return strings.Join(block, "\n") + "\n"
		case state == 2:
			block = append(block, line)
		}
	}
	t.Fatalf("README.md has no sh block after %q", heading)
	return ""
}

// filesUnder lists the regular files under dir, relative to it.
func filesUnder(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReadmeFirstFlow runs "Enroll a device in three commands" as written,
// in a directory laid out like a checkout after `make run` (bin/gatehouse,
// data/), against a server on a free port. Every file it writes, among
// them 100 live tokens and a device key, lands under the data directory
// (ignored by git), owner-only; and the ignore rules catch the files the
// flow used to leave in the checkout.
func TestReadmeFirstFlow(t *testing.T) {
	g := newGatehouse(t)
	g.serve(t)
	if err := os.MkdirAll(filepath.Join(g.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(g.bin, filepath.Join(g.dir, "bin", "gatehouse")); err != nil {
		t.Fatal(err)
	}
	script := readmeBlock(t, "## Enroll a device in three commands")
	script = strings.ReplaceAll(script, "gha_…", g.adminToken)
	script = strings.ReplaceAll(script, "http://127.0.0.1:8080", g.server)
	for _, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(line, "bin/gatehouse ") && !strings.Contains(line, "--server "+g.server) {
			t.Fatalf("a command of the flow does not name the server make run starts:\n%s", line)
		}
	}
	before := filesUnder(t, g.dir)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = g.dir
	cmd.Env = append(os.Environ(), g.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README flow failed: %v\n%s\n--- script\n%s", err, out, script)
	}
	if !strings.Contains(string(out), ": OK") {
		t.Errorf("openssl verify did not say OK:\n%s", out)
	}
	var outside, secrets []string
	for f := range filesUnder(t, g.dir) {
		if before[f] {
			continue
		}
		if !strings.HasPrefix(f, "data"+string(filepath.Separator)) {
			outside = append(outside, f)
		}
		if strings.HasSuffix(f, ".csv") || strings.HasSuffix(f, ".key") {
			secrets = append(secrets, f)
		}
	}
	if len(outside) > 0 {
		t.Errorf("the README flow wrote files outside the data directory: %q", outside)
	}
	if len(secrets) < 2 {
		t.Errorf("the flow wrote no token CSV and device key under data/: %q", secrets)
	}
	for _, f := range secrets {
		if st, err := os.Stat(filepath.Join(g.dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s is not owner-only: %v %v", f, err, st)
		}
	}

	// A safety net for the old flow's paths and for tokens written anywhere
	// in the checkout.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "--git-dir").Run(); err != nil {
		t.Logf("not a git checkout, ignore rules not checked: %v", err)
		return
	}
	for _, p := range []string{"tokens.csv", "tokens-line2.csv", "device/device.key", "device/ca-chain.crt", "data/tokens.csv", "data/devices/dev1/device.key"} {
		if err := exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", p).Run(); err != nil {
			t.Errorf("git does not ignore %s: %v", p, err)
		}
	}
}
