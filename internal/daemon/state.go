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

// loadPolicyState reads what the policy learned before a restart. A missing
// file is a first start; a file that cannot be read is reported and set
// aside: it is worth a day of learning, not a daemon that does not start.
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
		return policy.State{}
	}
	log.Info("read what the policy learned before the restart", "path", path)
	return st
}

// savePolicyState writes the policy's learned state to path, whole or not at
// all: a crash mid-write leaves the previous file.
func savePolicyState(path string, st policy.State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode policy state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save policy state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save policy state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save policy state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save policy state: %w", err)
	}
	return nil
}
