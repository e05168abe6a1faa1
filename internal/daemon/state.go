package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shoalci/shoal/internal/policy"
)

// Files in [daemon] state_dir.
const (
	// HostKeyFile is the runner Droplets' SSH host key.
	HostKeyFile = "runner_host_key"
	// PolicyStateFile is what the policy has learned.
	PolicyStateFile = "policy-state.json"
)

// loadPolicyState reads what the policy learned before a restart. A missing
// file is a first start; a file that cannot be read is reported and set
// aside (renamed to path.bad, so that a newer shoal's file survives a
// downgrade): it is worth a day of learning, not a daemon that does not start.
func loadPolicyState(path string, log *slog.Logger) policy.State {
	var st policy.State
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st
	}
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		log.Warn("cannot read what the policy learned before; it learns the arrival rate and the time of day again", "path", path, "error", err)
		if err := os.Rename(path, path+".bad"); err != nil {
			log.Warn("cannot set the unreadable policy state aside; the next save replaces it", "path", path, "error", err)
		}
		return policy.State{}
	}
	log.Info("read what the policy learned before the restart", "path", path)
	return st
}

// savePolicyState writes the policy's learned state to path, whole or not at
// all: a crash or a power cut mid-write leaves the previous file. One daemon
// writes it, so the temporary file has a fixed name.
func savePolicyState(path string, st policy.State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode policy state: %w", err)
	}
	tmp := path + ".tmp"
	if err := writeSynced(tmp, data); err != nil {
		return fmt.Errorf("save policy state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save policy state: %w", err)
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
