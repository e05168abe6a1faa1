package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Files in [daemon] state_dir.
const (
	// HostKeyFile is the runner Droplets' SSH host key.
	HostKeyFile = "runner_host_key"
	// PolicyStateFile is what the policy has learned.
	PolicyStateFile = "policy-state.json"
	// ShutdownsFile is when the graceful shutdowns of Droplets whose
	// runners cannot be reached began: their limit must outlive a restart.
	ShutdownsFile = "shutdowns.json"
)

// loadState reads what a file in state_dir keeps (what is the file's
// subject, for the log). A missing file is a first start; a file that cannot
// be read is reported and set aside (renamed to path.bad, so that a newer
// shoal's file survives a downgrade): the daemon starts all the same.
func loadState[T any](path, what string, log *slog.Logger) T {
	var st T
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st
	}
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		log.Warn("cannot read "+what+" kept before the restart; starting without it", "path", path, "error", err)
		if err := os.Rename(path, path+".bad"); err != nil {
			log.Warn("cannot set the unreadable file aside; the next save replaces it", "path", path, "error", err)
		}
		var zero T
		return zero
	}
	log.Info("read "+what+" kept before the restart", "path", path)
	return st
}

// saveState writes v to path as JSON, whole or not at all: a crash or a
// power cut mid-write leaves the previous file. One daemon writes it, so the
// temporary file has a fixed name.
func saveState(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	tmp := path + ".tmp"
	if err := writeSynced(tmp, data); err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	// The rename is durable once the directory is.
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}

// writeSynced writes data to a file and syncs it to the disk.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
