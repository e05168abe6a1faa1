package glemu

import (
	"cmp"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Prefix is where the API lives, as on a GitLab instance.
const Prefix = "/api/v4"

func (s *Server) routes() {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request)) {
		mux.HandleFunc("GET "+Prefix+pattern, h)
	}
	handle("/version", s.getVersion)
	handle("/projects", s.listProjects)
	handle("/projects/{id}", s.getProject)
	handle("/projects/{id}/jobs", s.listProjectJobs)
	handle("/projects/{id}/jobs/{job_id}", s.getJob)
	handle("/projects/{id}/pipelines", s.listPipelines)
	handle("/projects/{id}/pipelines/{pipeline_id}", s.getPipeline)
	handle("/projects/{id}/pipelines/{pipeline_id}/jobs", s.listPipelineJobs)
	handle("/groups", s.listGroups)
	handle("/groups/{id}", s.getGroup)
	handle("/groups/{id}/projects", s.listGroupProjects)
	handle("/groups/{id}/subgroups", s.listSubgroups)
	handle("/runners", s.listRunners)
	handle("/runners/all", s.listRunners)
	handle("/runners/{id}", s.getRunner)
	handle("/runners/{id}/managers", s.listManagers)
	handle("/runners/{id}/jobs", s.listRunnerJobs)
	mux.HandleFunc("POST "+Prefix+"/runners/verify", s.verifyRunner)
	s.mux = mux
}

// runnerAPI are the paths of GitLab's runner API, authenticated by the
// runner's token in the request, not by an access token.
var runnerAPI = map[string]bool{Prefix + "/runners/verify": true}

// ServeHTTP serves the API under /api/v4. Every request needs an access token.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, Prefix+"/") {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "404 Not Found"})
		return
	}
	if !runnerAPI[r.URL.Path] && !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "401 Unauthorized"})
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// Grape's answers: 405 for a known route and another method, 404 otherwise.
		get := r.Clone(r.Context())
		get.Method = http.MethodGet
		if _, p := s.mux.Handler(get); p != "" && r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "405 Not Allowed"})
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "404 Not Found"})
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	token := tokenOf(r)
	if token == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[token]
}

// tokenOf is the access token a request carries (PRIVATE-TOKEN or bearer).
func tokenOf(r *http.Request) string {
	if token := r.Header.Get("PRIVATE-TOKEN"); token != "" {
		return token
	}
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return token
}

// jobsLimited counts a GET /projects/:id/jobs against its token's
// JobsPerMinute and, beyond it, answers as GitLab's jobs_index limit does.
// Call with s.mu held.
func (s *Server) jobsLimited(w http.ResponseWriter, r *http.Request) bool {
	if s.jobsLimit <= 0 {
		return false
	}
	if window := s.clk.Now().Unix() / 60; window != s.jobsWindow || s.jobsCount == nil {
		s.jobsWindow, s.jobsCount = window, map[string]int{}
	}
	tok := tokenOf(r)
	s.jobsCount[tok]++
	if s.jobsCount[tok] <= s.jobsLimit {
		return false
	}
	w.Header().Set("Retry-After", "60")
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"message": map[string]string{"error": "This endpoint has been requested too many times. Try again later."}})
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// notFound answers as GitLab's API does for a missing resource: "404 Project Not Found".
func notFound(w http.ResponseWriter, what string) {
	msg := "404 Not Found"
	if what != "" {
		msg = "404 " + what + " Not Found"
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"message": msg})
}

// optionalBool reads a boolean query parameter, nil when it is absent.
func optionalBool(q url.Values, name string) (*bool, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("%s is invalid", name)
	}
	return &b, nil
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

// paginate writes one page of items with GitLab's offset-pagination headers
// (x-page, x-per-page, x-next-page, x-prev-page, x-total, x-total-pages, Link).
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T) {
	q := r.URL.Query()
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	perPage, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage < 1 {
		perPage = 20
	}
	perPage = min(perPage, 100)
	total := len(items)
	pages := max(1, (total+perPage-1)/perPage)
	lo := min((page-1)*perPage, total)
	hi := min(lo+perPage, total)

	h := w.Header()
	h.Set("X-Page", strconv.Itoa(page))
	h.Set("X-Per-Page", strconv.Itoa(perPage))
	h.Set("X-Total", strconv.Itoa(total))
	h.Set("X-Total-Pages", strconv.Itoa(pages))
	next, prev := "", ""
	if page < pages {
		next = strconv.Itoa(page + 1)
	}
	if page > 1 {
		prev = strconv.Itoa(page - 1)
	}
	h.Set("X-Next-Page", next)
	h.Set("X-Prev-Page", prev)

	link := func(p int, rel string) string {
		u := url.URL{Scheme: "http", Host: cmp.Or(r.Host, r.URL.Host), Path: r.URL.Path}
		if r.TLS != nil {
			u.Scheme = "https"
		}
		if r.URL.Scheme != "" { // an in-process request (Transport) carries an absolute URL
			u.Scheme = r.URL.Scheme
		}
		lq := r.URL.Query()
		lq.Set("page", strconv.Itoa(p))
		lq.Set("per_page", strconv.Itoa(perPage))
		u.RawQuery = lq.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if prev != "" {
		links = append(links, link(page-1, "prev"))
	}
	if next != "" {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(1, "first"), link(pages, "last"))
	h.Set("Link", strings.Join(links, ", "))

	out := items[lo:hi]
	if out == nil {
		out = []T{}
	}
	writeJSON(w, http.StatusOK, out)
}

// sortDir reads sort=asc|desc (default desc, GitLab's default for these lists).
func sortDir(r *http.Request) (int, bool) {
	switch r.URL.Query().Get("sort") {
	case "", "desc":
		return -1, true
	case "asc":
		return 1, true
	}
	return 0, false
}

// ---- lookups, with s.mu held ----

// ciProject finds the project of a job or pipeline endpoint and, when it
// cannot be read, answers 404, or 403 as GitLab's authorize_read_builds!
// does for a project with CI/CD turned off.
func (s *Server) ciProject(w http.ResponseWriter, r *http.Request) *project {
	p := s.projectByRef(r.PathValue("id"))
	switch {
	case p == nil:
		notFound(w, "Project")
		return nil
	case p.ciOff:
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "403 Forbidden"})
		return nil
	}
	return p
}

// projectByRef finds a project by numeric ID or by URL-encoded full path.
func (s *Server) projectByRef(ref string) *project {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return s.projects[id]
	}
	for _, p := range s.projList {
		if p.path == ref {
			return p
		}
	}
	return nil
}

func (s *Server) groupByRef(ref string) *group {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return s.groups[id]
	}
	for _, g := range s.groupList {
		if g.path == ref {
			return g
		}
	}
	return nil
}

// ---- JSON shapes, after GitLab's API entities ----

// apiTime is how the API writes times: ISO 8601 with milliseconds, or null
// (see isoTime). A formatted string, not a json.Marshaler: encoding cost
// matters when a simulator polls for a week.
type apiTime = *string

type apiUser struct {
	ID        int64  `json:"id"`
	Username  string `json:"username"`
	Name      string `json:"name"`
	State     string `json:"state"`
	AvatarURL string `json:"avatar_url"`
	WebURL    string `json:"web_url"`
}

var rootUser = apiUser{ID: 1, Username: "root", Name: "Administrator", State: "active"}

type apiNamespace struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Path     string `json:"path"`
	Kind     string `json:"kind"`
	FullPath string `json:"full_path"`
	ParentID *int64 `json:"parent_id"`
	WebURL   string `json:"web_url"`
}

type apiProject struct {
	ID                int64        `json:"id"`
	Description       string       `json:"description"`
	Name              string       `json:"name"`
	NameWithNamespace string       `json:"name_with_namespace"`
	Path              string       `json:"path"`
	PathWithNamespace string       `json:"path_with_namespace"`
	CreatedAt         apiTime      `json:"created_at"`
	LastActivityAt    apiTime      `json:"last_activity_at"`
	DefaultBranch     string       `json:"default_branch"`
	Visibility        string       `json:"visibility"`
	Archived          bool         `json:"archived"`
	EmptyRepo         bool         `json:"empty_repo"`
	SSHURLToRepo      string       `json:"ssh_url_to_repo"`
	HTTPURLToRepo     string       `json:"http_url_to_repo"`
	WebURL            string       `json:"web_url"`
	Namespace         apiNamespace `json:"namespace"`
	TagList           []string     `json:"tag_list"`
	Topics            []string     `json:"topics"`
}

func (s *Server) apiProject(p *project) apiProject {
	ns := apiNamespace{ID: 1, Name: "root", Path: "root", Kind: "user", FullPath: "root", WebURL: s.extURL + "/root"}
	if g := p.group; g != nil {
		ns = apiNamespace{ID: g.id, Name: g.name, Path: g.name, Kind: "group", FullPath: g.path, WebURL: s.extURL + "/groups/" + g.path}
		if g.parent != nil {
			ns.ParentID = &g.parent.id
		}
	}
	last := p.createdAt
	if n := len(p.pipelines); n > 0 {
		last = p.pipelines[n-1].updatedAt
	}
	host := strings.TrimPrefix(strings.TrimPrefix(s.extURL, "https://"), "http://")
	return apiProject{
		ID: p.id, Name: p.name, Path: p.name, PathWithNamespace: p.path,
		NameWithNamespace: strings.ReplaceAll(p.path, "/", " / "),
		CreatedAt:         isoTime(p.createdAt), LastActivityAt: isoTime(last),
		DefaultBranch: "main", Visibility: "private",
		SSHURLToRepo:  "git@" + host + ":" + p.path + ".git",
		HTTPURLToRepo: s.extURL + "/" + p.path + ".git",
		WebURL:        s.extURL + "/" + p.path,
		Namespace:     ns, TagList: []string{}, Topics: []string{}, Archived: p.archived,
	}
}

type apiGroup struct {
	ID          int64   `json:"id"`
	Name        string  `json:"name"`
	Path        string  `json:"path"`
	Description string  `json:"description"`
	Visibility  string  `json:"visibility"`
	FullName    string  `json:"full_name"`
	FullPath    string  `json:"full_path"`
	ParentID    *int64  `json:"parent_id"`
	WebURL      string  `json:"web_url"`
	CreatedAt   apiTime `json:"created_at"`
}

func (s *Server) apiGroup(g *group) apiGroup {
	a := apiGroup{ID: g.id, Name: g.name, Path: g.name, Visibility: "private",
		FullName: strings.ReplaceAll(g.path, "/", " / "), FullPath: g.path,
		WebURL: s.extURL + "/groups/" + g.path, CreatedAt: isoTime(g.createdAt)}
	if g.parent != nil {
		a.ParentID = &g.parent.id
	}
	return a
}

type apiPipelineRef struct {
	ID        int64  `json:"id"`
	ProjectID int64  `json:"project_id"`
	Ref       string `json:"ref"`
	SHA       string `json:"sha"`
	Status    string `json:"status"`
}

type apiPipelineBasic struct {
	ID        int64   `json:"id"`
	IID       int64   `json:"iid"`
	ProjectID int64   `json:"project_id"`
	SHA       string  `json:"sha"`
	Ref       string  `json:"ref"`
	Status    string  `json:"status"`
	Source    string  `json:"source"`
	CreatedAt apiTime `json:"created_at"`
	UpdatedAt apiTime `json:"updated_at"`
	WebURL    string  `json:"web_url"`
}

type apiPipeline struct {
	apiPipelineBasic
	BeforeSHA      string            `json:"before_sha"`
	Tag            bool              `json:"tag"`
	YamlErrors     *string           `json:"yaml_errors"`
	User           apiUser           `json:"user"`
	StartedAt      apiTime           `json:"started_at"`
	FinishedAt     apiTime           `json:"finished_at"`
	CommittedAt    apiTime           `json:"committed_at"`
	Duration       *int64            `json:"duration"`
	QueuedDuration *int64            `json:"queued_duration"`
	Coverage       *string           `json:"coverage"`
	DetailedStatus apiDetailedStatus `json:"detailed_status"`
}

type apiDetailedStatus struct {
	Icon        string `json:"icon"`
	Text        string `json:"text"`
	Label       string `json:"label"`
	Group       string `json:"group"`
	Tooltip     string `json:"tooltip"`
	HasDetails  bool   `json:"has_details"`
	DetailsPath string `json:"details_path"`
	Favicon     string `json:"favicon"`
}

// fakeSHA is a stable commit SHA for a pipeline.
func fakeSHA(pipelineID int64) string {
	sum := sha1.Sum(fmt.Appendf(nil, "glemu pipeline %d", pipelineID))
	return hex.EncodeToString(sum[:])
}

func (s *Server) apiPipelineBasic(pl *pipeline) apiPipelineBasic {
	return apiPipelineBasic{
		ID: pl.id, IID: pl.iid, ProjectID: pl.project.id, SHA: fakeSHA(pl.id), Ref: "main",
		Status: pl.status, Source: "push", CreatedAt: isoTime(pl.createdAt), UpdatedAt: isoTime(pl.updatedAt),
		WebURL: fmt.Sprintf("%s/%s/-/pipelines/%d", s.extURL, pl.project.path, pl.id),
	}
}

func (s *Server) apiPipeline(pl *pipeline) apiPipeline {
	b := s.apiPipelineBasic(pl)
	a := apiPipeline{apiPipelineBasic: b, BeforeSHA: b.SHA, User: rootUser,
		StartedAt: isoTime(pl.startedAt), FinishedAt: isoTime(pl.finishedAt), CommittedAt: isoTime(pl.createdAt),
		DetailedStatus: apiDetailedStatus{
			Icon: "status_" + pl.status, Text: pl.status, Label: pl.status, Group: pl.status,
			Tooltip: pl.status, HasDetails: true, Favicon: "favicon_status_" + pl.status,
			DetailsPath: fmt.Sprintf("/%s/-/pipelines/%d", pl.project.path, pl.id),
		}}
	if !pl.startedAt.IsZero() {
		q := int64(pl.startedAt.Sub(pl.createdAt).Seconds())
		a.QueuedDuration = &q
		end := pl.finishedAt
		if end.IsZero() {
			end = s.clk.Now()
		}
		d := int64(end.Sub(pl.startedAt).Seconds())
		a.Duration = &d
	}
	return a
}

type apiJobRunner struct {
	ID          int64  `json:"id"`
	Description string `json:"description"`
	IPAddress   string `json:"ip_address"`
	Active      bool   `json:"active"`
	Paused      bool   `json:"paused"`
	IsShared    bool   `json:"is_shared"`
	RunnerType  string `json:"runner_type"`
	Name        string `json:"name"`
	Online      bool   `json:"online"`
	Status      string `json:"status"`
}

type apiJobProject struct {
	ID                     int64  `json:"id"`
	Name                   string `json:"name"`
	NameWithNamespace      string `json:"name_with_namespace"`
	Path                   string `json:"path"`
	PathWithNamespace      string `json:"path_with_namespace"`
	CIJobTokenScopeEnabled bool   `json:"ci_job_token_scope_enabled"`
}

type apiJob struct {
	ID                int64          `json:"id"`
	Name              string         `json:"name"`
	Stage             string         `json:"stage"`
	Status            string         `json:"status"`
	Ref               string         `json:"ref"`
	Tag               bool           `json:"tag"`
	Coverage          *float64       `json:"coverage"`
	AllowFailure      bool           `json:"allow_failure"`
	Archived          bool           `json:"archived"`
	CreatedAt         apiTime        `json:"created_at"`
	StartedAt         apiTime        `json:"started_at"`
	FinishedAt        apiTime        `json:"finished_at"`
	ErasedAt          apiTime        `json:"erased_at"`
	Duration          *float64       `json:"duration"`
	QueuedDuration    *float64       `json:"queued_duration"`
	ArtifactsExpireAt apiTime        `json:"artifacts_expire_at"`
	TagList           []string       `json:"tag_list"`
	FailureReason     string         `json:"failure_reason,omitempty"`
	User              apiUser        `json:"user"`
	Commit            apiCommit      `json:"commit"`
	Pipeline          apiPipelineRef `json:"pipeline"`
	WebURL            string         `json:"web_url"`
	Project           apiJobProject  `json:"project"`
	Artifacts         []struct{}     `json:"artifacts"`
	Runner            *apiJobRunner  `json:"runner"`
	RunnerManager     *apiManager    `json:"runner_manager"`
}

type apiCommit struct {
	ID             string  `json:"id"`
	ShortID        string  `json:"short_id"`
	Title          string  `json:"title"`
	Message        string  `json:"message"`
	AuthorName     string  `json:"author_name"`
	AuthorEmail    string  `json:"author_email"`
	CreatedAt      apiTime `json:"created_at"`
	AuthoredDate   apiTime `json:"authored_date"`
	CommitterName  string  `json:"committer_name"`
	CommitterEmail string  `json:"committer_email"`
	CommittedDate  apiTime `json:"committed_date"`
	WebURL         string  `json:"web_url"`
}

func (s *Server) apiJob(j *job, now time.Time) apiJob {
	pl := j.pipeline
	p := pl.project
	sha := fakeSHA(pl.id)
	a := apiJob{
		ID: j.id, Name: j.name, Stage: j.stage.name, Status: j.status, Ref: "main",
		CreatedAt: isoTime(j.createdAt), StartedAt: isoTime(j.startedAt), FinishedAt: isoTime(j.finished),
		TagList: nonNil(j.tags), FailureReason: j.failure, User: rootUser,
		Commit: apiCommit{ID: sha, ShortID: sha[:8], Title: "Update .gitlab-ci.yml", Message: "Update .gitlab-ci.yml\n",
			AuthorName: rootUser.Name, AuthorEmail: "admin@example.com", CreatedAt: isoTime(pl.createdAt),
			AuthoredDate: isoTime(pl.createdAt), CommitterName: rootUser.Name, CommitterEmail: "admin@example.com",
			CommittedDate: isoTime(pl.createdAt), WebURL: fmt.Sprintf("%s/%s/-/commit/%s", s.extURL, p.path, sha)},
		Pipeline: apiPipelineRef{ID: pl.id, ProjectID: p.id, Ref: "main", SHA: sha, Status: pl.status},
		WebURL:   fmt.Sprintf("%s/%s/-/jobs/%d", s.extURL, p.path, j.id),
		Project: apiJobProject{ID: p.id, Name: p.name, Path: p.name, PathWithNamespace: p.path,
			NameWithNamespace: strings.ReplaceAll(p.path, "/", " / ")},
		Artifacts: []struct{}{},
	}
	// queued_duration runs from queueing to pick-up (or to now while pending),
	// duration from pick-up to finish (or to now while running), as in GitLab.
	if !j.queuedAt.IsZero() {
		end := now
		if !j.startedAt.IsZero() {
			end = j.startedAt
		}
		a.QueuedDuration = seconds(end.Sub(j.queuedAt))
	}
	if !j.startedAt.IsZero() {
		end := now
		if !j.finished.IsZero() {
			end = j.finished
		}
		a.Duration = seconds(end.Sub(j.startedAt))
	}
	if m := j.manager; m != nil {
		a.Runner = s.apiJobRunner(m.runner, now)
		if !s.noRunnerManager {
			mm := s.apiManager(m, now)
			a.RunnerManager = &mm
		}
	}
	return a
}

func (s *Server) apiJobRunner(r *runner, now time.Time) *apiJobRunner {
	status := s.runnerStatus(r, now)
	return &apiJobRunner{ID: r.id, Description: r.description, Active: true, IsShared: true,
		RunnerType: "instance_type", Online: status == "online", Status: status}
}

// onlineFor is how long GitLab calls a runner or manager online after its
// last contact (Ci::Runner::ONLINE_CONTACT_TIMEOUT).
const onlineFor = 2 * time.Hour

// runnerStatus is online while any manager is, never_contacted before any
// manager registered, offline otherwise.
func (s *Server) runnerStatus(r *runner, now time.Time) string {
	if r.managers > r.exited {
		return "online" // a manager still running keeps contact
	}
	for _, m := range s.managers {
		if m.runner == r && s.managerStatus(m, now) == "online" {
			return "online"
		}
	}
	if r.managers == 0 && len(r.history) == 0 {
		return "never_contacted"
	}
	return "offline"
}

// managerStatus is online until onlineFor after the manager's last contact.
func (s *Server) managerStatus(m *manager, now time.Time) string {
	if m.gone || now.Sub(m.lastTick(now, s.epoch)) > onlineFor {
		return "offline"
	}
	return "online"
}

type apiManager struct {
	ID                 int64   `json:"id"`
	SystemID           string  `json:"system_id"`
	Version            string  `json:"version"`
	Revision           string  `json:"revision"`
	Platform           string  `json:"platform"`
	Architecture       string  `json:"architecture"`
	CreatedAt          apiTime `json:"created_at"`
	ContactedAt        apiTime `json:"contacted_at"`
	IPAddress          string  `json:"ip_address"`
	Status             string  `json:"status"`
	JobExecutionStatus string  `json:"job_execution_status"`
}

func (s *Server) apiManager(m *manager, now time.Time) apiManager {
	a := apiManager{ID: m.id, SystemID: m.systemID, Version: "18.6.0", Revision: "b1a3c0d6",
		Platform: "linux", Architecture: "amd64", CreatedAt: isoTime(m.createdAt),
		ContactedAt: isoTime(m.lastTick(now, s.epoch)), IPAddress: "", Status: s.managerStatus(m, now), JobExecutionStatus: "idle"}
	if len(m.running) > 0 {
		a.JobExecutionStatus = "active"
	}
	return a
}

type apiRunnerDetails struct {
	ID              int64           `json:"id"`
	Description     string          `json:"description"`
	Name            *string         `json:"name"`
	IPAddress       string          `json:"ip_address"`
	Active          bool            `json:"active"`
	Paused          bool            `json:"paused"`
	IsShared        bool            `json:"is_shared"`
	RunnerType      string          `json:"runner_type"`
	Online          bool            `json:"online"`
	Status          string          `json:"status"`
	ContactedAt     apiTime         `json:"contacted_at"`
	CreatedAt       apiTime         `json:"created_at"`
	TagList         []string        `json:"tag_list"`
	RunUntagged     bool            `json:"run_untagged"`
	Locked          bool            `json:"locked"`
	AccessLevel     string          `json:"access_level"`
	MaximumTimeout  *int64          `json:"maximum_timeout"`
	MaintenanceNote *string         `json:"maintenance_note"`
	Projects        []apiJobProject `json:"projects"`
	Groups          []apiGroup      `json:"groups"`
}

func (s *Server) apiRunner(r *runner, now time.Time) apiRunnerDetails {
	status := s.runnerStatus(r, now)
	var contacted time.Time
	for _, m := range s.managers {
		if m.runner == r {
			if t := m.lastTick(now, s.epoch); t.After(contacted) {
				contacted = t
			}
		}
	}
	return apiRunnerDetails{ID: r.id, Description: r.description, Active: true, IsShared: true,
		RunnerType: "instance_type", Online: status == "online", Status: status,
		ContactedAt: isoTime(contacted), CreatedAt: isoTime(r.createdAt), TagList: nonNil(r.tags),
		RunUntagged: r.runUntagged, AccessLevel: "not_protected",
		Projects: []apiJobProject{}, Groups: []apiGroup{}}
}

// ---- handlers ----

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) {
	dir, ok := sortDir(r)
	if !ok {
		badRequest(w, "sort does not have a valid value")
		return
	}
	s.mu.Lock()
	out := make([]apiProject, 0, len(s.projList))
	for _, p := range s.projList {
		out = append(out, s.apiProject(p))
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b apiProject) int { return dir * cmp.Compare(a.ID, b.ID) })
	paginate(w, r, out)
}

// Version is the GitLab version the emulator answers to GET /version: one
// whose pipeline listing has source=parent_pipeline (17.0 on).
const Version = "17.5.0"

func (s *Server) getVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": Version, "revision": "glemu"})
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projectByRef(r.PathValue("id"))
	if p == nil {
		notFound(w, "Project")
		return
	}
	writeJSON(w, http.StatusOK, s.apiProject(p))
}

var jobScopes = []string{StatusCreated, StatusPending, StatusRunning, StatusFailed, StatusSuccess,
	"canceled", StatusSkipped, "waiting_for_resource", "manual", "preparing", "scheduled", "canceling"}

// finished reports whether a job in this status is done for good.
func finished(status string) bool {
	switch status {
	case StatusSuccess, StatusFailed, StatusSkipped, "canceled":
		return true
	}
	return false
}

// jobScope reads scope or scope[] (one or more statuses); nil means all jobs.
func jobScope(r *http.Request) ([]string, bool) {
	q := r.URL.Query()
	scope := append(q["scope[]"], q["scope"]...)
	for _, sc := range scope {
		if !slices.Contains(jobScopes, sc) {
			return nil, false
		}
	}
	return scope, true
}

func (s *Server) listProjectJobs(w http.ResponseWriter, r *http.Request) {
	scope, ok := jobScope(r)
	if !ok {
		badRequest(w, "scope does not have a valid value")
		return
	}
	s.mu.Lock()
	if s.jobsLimited(w, r) {
		s.mu.Unlock()
		return
	}
	p := s.ciProject(w, r)
	if p == nil {
		s.mu.Unlock()
		return
	}
	now := s.clk.Now()
	var jobs []*job
	if len(scope) == 1 && scope[0] == StatusPending {
		// The autoscaler's hot path: read the pending queues, not the whole history.
		for _, ts := range s.tagSetList {
			for _, j := range ts.queue[ts.head:] {
				if j.pipeline.project == p {
					jobs = append(jobs, j)
				}
			}
		}
	} else {
		from := 0
		if len(scope) > 0 && !slices.ContainsFunc(scope, finished) {
			for p.settled < len(p.jobs) && finished(p.jobs[p.settled].status) {
				p.settled++
			}
			from = p.settled
		}
		for _, j := range p.jobs[from:] {
			if len(scope) == 0 || slices.Contains(scope, j.status) {
				jobs = append(jobs, j)
			}
		}
	}
	slices.SortFunc(jobs, func(a, b *job) int { return cmp.Compare(b.id, a.id) }) // newest first, as GitLab
	out := make([]apiJob, len(jobs))
	for i, j := range jobs {
		out[i] = s.apiJob(j, now)
	}
	s.mu.Unlock()
	paginate(w, r, out)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ciProject(w, r)
	if p == nil {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("job_id"), 10, 64)
	if err != nil || id < 1 || id > int64(len(s.jobs)) || s.jobs[id-1].pipeline.project != p {
		notFound(w, "")
		return
	}
	writeJSON(w, http.StatusOK, s.apiJob(s.jobs[id-1], s.clk.Now()))
}

func (s *Server) listPipelines(w http.ResponseWriter, r *http.Request) {
	dir, ok := sortDir(r)
	if !ok {
		badRequest(w, "sort does not have a valid value")
		return
	}
	status, source := r.URL.Query().Get("status"), r.URL.Query().Get("source")
	// GitLab's Ci::PipelinesFinder: created_at > created_after, < created_before;
	// updated_at the same.
	var after, before, updatedAfter, updatedBefore time.Time
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"created_after", &after}, {"created_before", &before}, {"updated_after", &updatedAfter}, {"updated_before", &updatedBefore}} {
		v := r.URL.Query().Get(f.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			badRequest(w, f.name+" is invalid")
			return
		}
		*f.t = t
	}
	s.mu.Lock()
	p := s.ciProject(w, r)
	if p == nil {
		s.mu.Unlock()
		return
	}
	var out []apiPipelineBasic
	for _, pl := range p.pipelines {
		// Every pipeline here is a push pipeline: none is a child.
		if (status == "" || pl.status == status) && (source == "" || source == "push") && (after.IsZero() || pl.createdAt.After(after)) &&
			(before.IsZero() || pl.createdAt.Before(before)) && (updatedAfter.IsZero() || pl.updatedAt.After(updatedAfter)) &&
			(updatedBefore.IsZero() || pl.updatedAt.Before(updatedBefore)) {
			out = append(out, s.apiPipelineBasic(pl))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b apiPipelineBasic) int { return dir * cmp.Compare(a.ID, b.ID) })
	paginate(w, r, out)
}

func (s *Server) pipelineOf(w http.ResponseWriter, r *http.Request) *pipeline {
	p := s.ciProject(w, r)
	if p == nil {
		return nil
	}
	id, err := strconv.ParseInt(r.PathValue("pipeline_id"), 10, 64)
	pl := s.pipelines[id]
	if err != nil || pl == nil || pl.project != p {
		notFound(w, "")
		return nil
	}
	return pl
}

func (s *Server) getPipeline(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pl := s.pipelineOf(w, r); pl != nil {
		writeJSON(w, http.StatusOK, s.apiPipeline(pl))
	}
}

func (s *Server) listPipelineJobs(w http.ResponseWriter, r *http.Request) {
	scope, ok := jobScope(r)
	if !ok {
		badRequest(w, "scope does not have a valid value")
		return
	}
	s.mu.Lock()
	pl := s.pipelineOf(w, r)
	if pl == nil {
		s.mu.Unlock()
		return
	}
	now := s.clk.Now()
	var out []apiJob
	for _, st := range pl.stages {
		for _, j := range st.jobs {
			if len(scope) == 0 || slices.Contains(scope, j.status) {
				out = append(out, s.apiJob(j, now))
			}
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b apiJob) int { return cmp.Compare(a.ID, b.ID) })
	paginate(w, r, out)
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := make([]apiGroup, 0, len(s.groupList))
	for _, g := range s.groupList {
		out = append(out, s.apiGroup(g))
	}
	s.mu.Unlock()
	// GitLab orders groups by name by default.
	slices.SortFunc(out, func(a, b apiGroup) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	paginate(w, r, out)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByRef(r.PathValue("id"))
	if g == nil {
		notFound(w, "Group")
		return
	}
	writeJSON(w, http.StatusOK, s.apiGroup(g))
}

func (s *Server) listGroupProjects(w http.ResponseWriter, r *http.Request) {
	dir, ok := sortDir(r)
	if !ok {
		badRequest(w, "sort does not have a valid value")
		return
	}
	// GitLab's defaults: with_shared=true, archived unset (both kinds).
	q := r.URL.Query()
	sub, _ := strconv.ParseBool(q.Get("include_subgroups"))
	shared, err1 := optionalBool(q, "with_shared")
	archived, err2 := optionalBool(q, "archived")
	if err := errors.Join(err1, err2); err != nil {
		badRequest(w, err.Error())
		return
	}
	withShared := shared == nil || *shared
	s.mu.Lock()
	g := s.groupByRef(r.PathValue("id"))
	if g == nil {
		s.mu.Unlock()
		notFound(w, "Group")
		return
	}
	var out []apiProject
	for _, p := range s.projList {
		if (p.inGroup(g, sub) || withShared && slices.Contains(p.shared, g)) && (archived == nil || p.archived == *archived) {
			out = append(out, s.apiProject(p))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b apiProject) int { return dir * cmp.Compare(a.ID, b.ID) })
	paginate(w, r, out)
}

func (s *Server) listSubgroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	g := s.groupByRef(r.PathValue("id"))
	if g == nil {
		s.mu.Unlock()
		notFound(w, "Group")
		return
	}
	var out []apiGroup
	for _, c := range s.groupList {
		if c.parent == g {
			out = append(out, s.apiGroup(c))
		}
	}
	s.mu.Unlock()
	paginate(w, r, out)
}

func (s *Server) listRunners(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now := s.clk.Now()
	out := make([]apiJobRunner, 0, len(s.runnerList))
	for _, rn := range s.runnerList {
		out = append(out, *s.apiJobRunner(rn, now))
	}
	s.mu.Unlock()
	paginate(w, r, out)
}

func (s *Server) runnerOf(w http.ResponseWriter, r *http.Request) *runner {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	rn := s.runners[id]
	if err != nil || rn == nil {
		notFound(w, "Runner")
		return nil
	}
	return rn
}

func (s *Server) getRunner(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rn := s.runnerOf(w, r); rn != nil {
		writeJSON(w, http.StatusOK, s.apiRunner(rn, s.clk.Now()))
	}
}

// verifyRunner is POST /runners/verify: it tells a runner authentication
// token's runner, and refuses a token it does not know with 403. (Given a
// system_id GitLab also records a manager; shoal never sends one.)
func (s *Server) verifyRunner(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Token == "" {
		badRequest(w, "token is missing")
		return
	}
	s.mu.Lock()
	rn := s.runnerByToken(body.Token)
	s.mu.Unlock()
	if rn == nil {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "403 Forbidden"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": rn.id, "token": rn.token, "token_expires_at": nil})
}

func (s *Server) listManagers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rn := s.runnerOf(w, r)
	if rn == nil {
		s.mu.Unlock()
		return
	}
	now := s.clk.Now()
	var out []apiManager
	for _, m := range s.managers {
		if m.runner == rn {
			out = append(out, s.apiManager(m, now))
		}
	}
	s.mu.Unlock()
	paginate(w, r, out)
}

func (s *Server) listRunnerJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && !slices.Contains(jobScopes, status) {
		badRequest(w, "status does not have a valid value")
		return
	}
	dir, ok := sortDir(r)
	if !ok {
		badRequest(w, "sort does not have a valid value")
		return
	}
	systemID := q.Get("system_id")
	s.mu.Lock()
	rn := s.runnerOf(w, r)
	if rn == nil {
		s.mu.Unlock()
		return
	}
	now := s.clk.Now()
	var jobs []*job
	if status == StatusRunning {
		// Hot path: only registered managers run jobs.
		for _, m := range s.managers {
			if m.runner == rn && (systemID == "" || m.systemID == systemID) {
				jobs = append(jobs, m.running...)
			}
		}
	} else {
		for _, j := range rn.history {
			if (status == "" || j.status == status) && (systemID == "" || j.manager.systemID == systemID) {
				jobs = append(jobs, j)
			}
		}
	}
	slices.SortFunc(jobs, func(a, b *job) int { return dir * cmp.Compare(a.id, b.id) })
	out := make([]apiJob, len(jobs))
	for i, j := range jobs {
		out[i] = s.apiJob(j, now)
	}
	s.mu.Unlock()
	paginate(w, r, out)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
