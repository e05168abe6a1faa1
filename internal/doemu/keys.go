package doemu

import (
	"crypto/md5"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

type sshKey struct {
	ID          int    `json:"id"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key"`
	Name        string `json:"name"`
}

// md5Fingerprint is the colon-separated MD5 fingerprint DigitalOcean identifies keys by.
func md5Fingerprint(k ssh.PublicKey) string {
	sum := md5.Sum(k.Marshal())
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":")
}

// findKey finds a key by ID or fingerprint. Call with s.mu held.
func (s *Server) findKey(ref string) *sshKey {
	if id, err := strconv.Atoi(ref); err == nil {
		return s.keys[id]
	}
	for _, k := range s.keys {
		if k.Fingerprint == ref {
			return k
		}
	}
	return nil
}

type keyRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var req keyRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		unprocessable(w, "Name is required.")
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		unprocessable(w, "Key invalid, key should be of the form `type key [comment]`")
		return
	}
	fp := md5Fingerprint(pub)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findKey(fp) != nil {
		unprocessable(w, "SSH Key is already in use on your account")
		return
	}
	k := &sshKey{ID: s.newID(), Fingerprint: fp, PublicKey: strings.TrimSpace(req.PublicKey), Name: req.Name}
	s.keys[k.ID] = k
	s.keyOrder = append(s.keyOrder, k.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"ssh_key": k})
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	list := make([]sshKey, 0, len(s.keyOrder))
	for _, id := range s.keyOrder {
		list = append(list, *s.keys[id])
	}
	s.mu.Unlock()
	writePage(w, r, "ssh_keys", list)
}

// keyFromPath finds the key named by {ssh_key_identifier}, answering 404 itself. Call with s.mu held.
func (s *Server) keyFromPath(w http.ResponseWriter, r *http.Request) *sshKey {
	k := s.findKey(r.PathValue("ssh_key_identifier"))
	if k == nil {
		notFound(w)
	}
	return k
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keyFromPath(w, r); k != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ssh_key": k})
	}
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request) {
	var req keyRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keyFromPath(w, r)
	if k == nil {
		return
	}
	if strings.TrimSpace(req.Name) != "" {
		k.Name = req.Name
	}
	writeJSON(w, http.StatusOK, map[string]any{"ssh_key": k})
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keyFromPath(w, r)
	if k == nil {
		return
	}
	delete(s.keys, k.ID)
	for i, id := range s.keyOrder {
		if id == k.ID {
			s.keyOrder = append(s.keyOrder[:i], s.keyOrder[i+1:]...)
			break
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
