package doemu

import "net/http"

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /v2/account", s.getAccount)
	m.HandleFunc("GET /v2/customers/my/balance", s.getBalance)
	m.HandleFunc("GET /v2/regions", s.listRegions)
	m.HandleFunc("GET /v2/sizes", s.listSizes)
	m.HandleFunc("GET /v2/images", s.listImages)

	m.HandleFunc("GET /v2/account/keys", s.listKeys)
	m.HandleFunc("POST /v2/account/keys", s.createKey)
	m.HandleFunc("GET /v2/account/keys/{ssh_key_identifier}", s.getKey)
	m.HandleFunc("PUT /v2/account/keys/{ssh_key_identifier}", s.updateKey)
	m.HandleFunc("DELETE /v2/account/keys/{ssh_key_identifier}", s.deleteKey)

	m.HandleFunc("GET /v2/droplets", s.listDroplets)
	m.HandleFunc("POST /v2/droplets", s.createDroplets)
	m.HandleFunc("DELETE /v2/droplets", s.deleteDropletsByTag)
	m.HandleFunc("GET /v2/droplets/{droplet_id}", s.getDroplet)
	m.HandleFunc("DELETE /v2/droplets/{droplet_id}", s.deleteDroplet)
	m.HandleFunc("GET /v2/droplets/{droplet_id}/actions", s.listDropletActions)
	m.HandleFunc("POST /v2/droplets/{droplet_id}/actions", s.postDropletAction)
	m.HandleFunc("GET /v2/droplets/{droplet_id}/actions/{action_id}", s.getDropletAction)
	m.HandleFunc("GET /v2/actions", s.listActions)
	m.HandleFunc("GET /v2/actions/{action_id}", s.getAction)

	m.HandleFunc("GET /v2/volumes", s.listVolumes)
	m.HandleFunc("POST /v2/volumes", s.createVolume)
	m.HandleFunc("DELETE /v2/volumes", s.deleteVolumeByName)
	m.HandleFunc("POST /v2/volumes/actions", s.postVolumeActionByName)
	m.HandleFunc("GET /v2/volumes/{volume_id}", s.getVolume)
	m.HandleFunc("DELETE /v2/volumes/{volume_id}", s.deleteVolume)
	m.HandleFunc("GET /v2/volumes/{volume_id}/actions", s.listVolumeActions)
	m.HandleFunc("POST /v2/volumes/{volume_id}/actions", s.postVolumeAction)
	m.HandleFunc("GET /v2/volumes/{volume_id}/actions/{action_id}", s.getVolumeAction)

	m.HandleFunc("GET /v2/databases", s.listDatabases)
	m.HandleFunc("GET /v2/databases/{database_cluster_uuid}", s.getDatabase)
	m.HandleFunc("GET /v2/databases/{database_cluster_uuid}/ca", s.getDatabaseCA)
	m.HandleFunc("GET /v2/databases/{database_cluster_uuid}/pools", s.listPools)
	m.HandleFunc("GET /v2/databases/{database_cluster_uuid}/pools/{pool_name}", s.getPool)
	m.HandleFunc("GET /v2/databases/{database_cluster_uuid}/firewall", s.getFirewall)
	m.HandleFunc("PUT /v2/databases/{database_cluster_uuid}/firewall", s.putFirewall)
	s.mux = m
}
