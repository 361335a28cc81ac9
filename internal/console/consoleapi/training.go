package consoleapi

import (
	"net/http"
	"sort"

	"github.com/fedrisk/fedrisk/internal/console"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobapi"
)

func trainLive(status string) bool {
	return status != "succeeded" && status != "failed" && status != "cancelled"
}

type trainingJobsData struct {
	Jobs []trainjobapi.JobBody
}

// trainingJobs lists the training jobs, newest first.
func (a *API) trainingJobs(w http.ResponseWriter, r *http.Request, rq *req) error {
	jobs, err := rq.api.trainJobs(r.Context())
	if err != nil {
		return err
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Created.After(jobs[j].Created) })
	return a.render(w, r, rq, http.StatusOK, "training", rq.cat.T("training.title"), trainingJobsData{Jobs: jobs})
}

type trainingJobData struct {
	Job     trainjobapi.JobBody
	Live    bool
	Curves  console.Curves
	Stats   []trainjob.EpochStat
	Percent float64
}

func (a *API) trainingJobData(r *http.Request, rq *req) (trainingJobData, error) {
	j, err := rq.api.trainJob(r.Context(), r.PathValue("id"))
	if err != nil {
		return trainingJobData{}, err
	}
	stats := make([]console.EpochStat, len(j.EpochStats))
	for i, s := range j.EpochStats {
		stats[i] = console.EpochStat{Epoch: s.Epoch, Seconds: s.Seconds, Loss: s.Loss, AUC: s.AUC, KS: s.KS, Best: s.Best}
	}
	d := trainingJobData{Job: j, Live: trainLive(j.Status), Curves: console.TrainingCurves(rq.cat, j.Algo, stats), Stats: j.EpochStats}
	if j.Epochs > 0 {
		d.Percent = min(100, float64(j.EpochsDone)/float64(j.Epochs)*100)
	}
	if j.Status == "succeeded" {
		d.Percent = 100
	}
	return d, nil
}

// trainingJob shows a job's loss and AUC curves (live while it trains).
func (a *API) trainingJob(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.trainingJobData(r, rq)
	if err != nil {
		return err
	}
	return a.render(w, r, rq, http.StatusOK, "trainjob", rq.cat.F("training.job_title", d.Job.ID), d)
}

func (a *API) trainingJobLive(w http.ResponseWriter, r *http.Request, rq *req) error {
	d, err := a.trainingJobData(r, rq)
	if err != nil {
		return err
	}
	return a.fragment(w, r, rq, "trainjob", "trainjob-live", d)
}
