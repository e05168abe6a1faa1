// Package cloud is the DigitalOcean subset shoal uses, behind a small interface,
// and its implementation on godo: the one package that imports godo. It waits for
// actions, pages through lists, retries what is safe to retry on the injected
// clock, makes Droplet creates idempotent, and turns DigitalOcean's errors into
// errors a caller can test for with errors.Is.
package cloud

import (
	"context"
	"time"
)

// Cloud is what shoal needs of DigitalOcean.
type Cloud interface {
	Account(ctx context.Context) (Account, error)
	// MonthToDateUsage is the account's spend this month, in USD.
	MonthToDateUsage(ctx context.Context) (float64, error)

	// CreateDroplets creates one Droplet per name (any number; DigitalOcean takes ten
	// per request). It is idempotent by name: when a response is lost it looks for
	// what was made before trying again, so a retry never makes a second Droplet.
	CreateDroplets(ctx context.Context, spec DropletSpec, names []string) ([]Droplet, error)
	// ListDroplets lists all Droplets carrying tag (all Droplets if tag is empty).
	ListDroplets(ctx context.Context, tag string) ([]Droplet, error)
	GetDroplet(ctx context.Context, id int) (Droplet, error)
	// DeleteDroplet deletes a Droplet; deleting one that is already gone is not an error.
	DeleteDroplet(ctx context.Context, id int) error
	// DropletAction starts power_off, power_on, shutdown, reboot or power_cycle and waits for it.
	DropletAction(ctx context.Context, id int, actionType string) (Action, error)
	// StartDropletAction starts one and returns without waiting: a graceful
	// shutdown lasts as long as the jobs the runner finishes first.
	StartDropletAction(ctx context.Context, id int, actionType string) (Action, error)

	CreateVolume(ctx context.Context, spec VolumeSpec) (Volume, error)
	// ListVolumes lists volumes, filtered by name and region when given.
	ListVolumes(ctx context.Context, name, region string) ([]Volume, error)
	GetVolume(ctx context.Context, id string) (Volume, error)
	DeleteVolume(ctx context.Context, id string) error
	// AttachVolume, DetachVolume and ResizeVolume start the action and wait for it.
	AttachVolume(ctx context.Context, volumeID string, dropletID int) (Action, error)
	DetachVolume(ctx context.Context, volumeID string, dropletID int) (Action, error)
	ResizeVolume(ctx context.Context, volumeID, region string, sizeGiB int) (Action, error)

	ListDatabases(ctx context.Context, tag string) ([]Database, error)
	GetDatabase(ctx context.Context, id string) (Database, error)
	DatabaseFirewall(ctx context.Context, id string) ([]FirewallRule, error)
	SetDatabaseFirewall(ctx context.Context, id string, rules []FirewallRule) error

	// Regions lists the regions and the sizes each offers.
	Regions(ctx context.Context) ([]Region, error)
	// Images lists the public images and the account's own.
	Images(ctx context.Context) ([]Image, error)

	CreateSSHKey(ctx context.Context, name, publicKey string) (SSHKey, error)
	ListSSHKeys(ctx context.Context) ([]SSHKey, error)
	// GetSSHKey finds a key by ID or fingerprint.
	GetSSHKey(ctx context.Context, idOrFingerprint string) (SSHKey, error)
	DeleteSSHKey(ctx context.Context, idOrFingerprint string) error

	// Rate is the rate-limit state from the latest response.
	Rate() Rate
	// Requests counts the API requests made so far, retries included.
	Requests() int64
}

// Account is the DigitalOcean account's limits and standing.
type Account struct {
	Email        string
	Status       string
	DropletLimit int
	VolumeLimit  int
}

// DropletSpec is everything about a Droplet to create except its name.
type DropletSpec struct {
	Region, Size, Image string
	SSHKeys             []string // IDs or fingerprints
	Tags                []string
	UserData            string
	VPCUUID             string
	Monitoring          bool
}

// Droplet is a Droplet as shoal sees it.
type Droplet struct {
	ID          int
	Name        string
	Status      string // new, active, off, archive
	Region      string
	Size        string
	PriceHourly float64
	Tags        []string
	Created     time.Time
	PublicIPv4  string
	PrivateIPv4 string
	VolumeIDs   []string
}

// Action is a DigitalOcean action.
type Action struct {
	ID          int
	Type        string
	Status      string // in-progress, completed, errored
	StartedAt   time.Time
	CompletedAt time.Time
}

// VolumeSpec describes a Block Storage volume to create.
type VolumeSpec struct {
	Name, Region, Description string
	SizeGiB                   int
	FilesystemType            string // ext4, xfs or empty for unformatted
	FilesystemLabel           string
	Tags                      []string
}

// Volume is a Block Storage volume.
type Volume struct {
	ID, Name, Region, Description string
	SizeGiB                       int
	FilesystemType                string
	FilesystemLabel               string
	DropletIDs                    []int
	Tags                          []string
	Created                       time.Time
}

// DevicePath is where DigitalOcean exposes the volume on the Droplet it is attached to.
func (v Volume) DevicePath() string { return "/dev/disk/by-id/scsi-0DO_Volume_" + v.Name }

// Database is a managed database cluster.
type Database struct {
	ID, Name, Engine, Version, Region, Status string
	Tags                                      []string
	Connection, PrivateConnection             Connection
	Pools                                     []Pool
}

// Connection is how to reach a database.
type Connection struct {
	URI, Database, Host, User, Password string
	Port                                int
	SSL                                 bool
}

// Pool is a PgBouncer connection pool.
type Pool struct {
	Name, Mode, DB, User          string
	Size                          int
	Connection, PrivateConnection Connection
}

// FirewallRule is a trusted source of a database (type droplet, k8s, ip_addr, tag or app).
type FirewallRule struct {
	Type, Value string
}

// SSHKey is an SSH public key on the account.
type SSHKey struct {
	ID                           int
	Name, Fingerprint, PublicKey string
}

// Rate is DigitalOcean's rate-limit state as its headers last reported it.
type Rate struct {
	Limit, Remaining int
	Reset            time.Time
}
