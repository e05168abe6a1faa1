package doemu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// MetadataURL is the base URL to give go-metadata's WithBaseURL for a Droplet:
// on DigitalOcean the metadata service knows the Droplet by the link-local address
// it is asked from; the emulator knows it by the droplet_id query parameter, which
// go-metadata keeps on every request it builds from the base URL.
func MetadataURL(emulatorURL string, dropletID int) string {
	return strings.TrimRight(emulatorURL, "/") + "/?droplet_id=" + strconv.Itoa(dropletID)
}

type metadataInterface struct {
	IPv4 struct {
		IPAddress string `json:"ip_address"`
		Netmask   string `json:"netmask"`
		Gateway   string `json:"gateway"`
	} `json:"ipv4"`
	MAC  string `json:"mac"`
	Type string `json:"type"`
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.URL.Query().Get("droplet_id"))
	s.mu.Lock()
	d := s.droplets[id]
	var (
		doc  map[string]any
		text = map[string]string{}
	)
	if err == nil && d != nil {
		var keys []string
		for _, kid := range d.sshKeys {
			if k := s.keys[kid]; k != nil {
				keys = append(keys, k.PublicKey)
			}
		}
		ifaces := map[string][]metadataInterface{}
		for i, pair := range [][2]string{{"public", d.publicIP}, {"private", d.privateIP}} {
			var m metadataInterface
			m.IPv4.IPAddress, m.IPv4.Netmask, m.IPv4.Gateway = pair[1], "255.255.240.0", gatewayOf(pair[1])
			m.MAC, m.Type = "02:00:00:00:00:0"+strconv.Itoa(i), pair[0]
			ifaces[pair[0]] = append(ifaces[pair[0]], m)
		}
		doc = map[string]any{
			"droplet_id": d.id, "hostname": d.name, "user_data": d.userData, "vendor_data": "",
			"public_keys": nonNil(keys), "region": d.region.Slug, "tags": nonNil(d.tags),
			"interfaces": ifaces, "dns": map[string]any{"nameservers": []string{"67.207.67.2", "67.207.67.3"}},
			"features": map[string]bool{"dhcp_enabled": false},
		}
		text["id"] = strconv.Itoa(d.id)
		text["hostname"] = d.name
		text["user-data"] = d.userData
		text["vendor-data"] = ""
		text["region"] = d.region.Slug
		text["public-keys"] = strings.Join(keys, "\n")
		text["tags"] = strings.Join(d.tags, "\n")
		text["dns/nameservers"] = "67.207.67.2\n67.207.67.3"
		text["interfaces/"] = "private/\npublic/"
		for kind, list := range ifaces {
			text["interfaces/"+kind+"/"] = "0/"
			text["interfaces/"+kind+"/0/ipv4/address"] = list[0].IPv4.IPAddress
			text["interfaces/"+kind+"/0/ipv4/netmask"] = list[0].IPv4.Netmask
			text["interfaces/"+kind+"/0/ipv4/gateway"] = list[0].IPv4.Gateway
			text["interfaces/"+kind+"/0/mac"] = list[0].MAC
			text["interfaces/"+kind+"/0/type"] = kind
		}
	}
	s.mu.Unlock()

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if doc == nil {
		http.Error(w, "droplet not found: the metadata base URL needs ?droplet_id=<id> of an existing Droplet", http.StatusNotFound)
		return
	}
	if r.URL.Path == "/metadata/v1.json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/metadata/v1/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if key == "tags/" {
		key = "tags"
	}
	v, ok := text[key]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(v))
}
