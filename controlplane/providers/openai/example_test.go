package openai_test

import (
	"context"
	"fmt"
	"time"

	"github.com/toktra/toktra/controlplane/providers"
	"github.com/toktra/toktra/controlplane/providers/openai"
	"github.com/toktra/toktra/controlplane/providers/providertest/fakeopenai"
)

func ExampleConnector_RevokeUser() {
	// A fake OpenAI organization stands in for https://api.openai.com/v1.
	fake := fakeopenai.New("sk-admin-example")
	defer fake.Close()
	fake.AddUser(fakeopenai.User{ID: "user-jo", Email: "jo@example.com"})
	fake.AddProject(fakeopenai.Project{ID: "proj-1"}, "user-jo")
	fake.AddKey(fakeopenai.Key{ID: "key-1", Project: "proj-1", OwnerUser: "user-jo"})

	conn, err := openai.New("sk-admin-example", providers.Options{BaseURL: fake.URL()})
	if err != nil {
		fmt.Println(err)
		return
	}
	rev, err := conn.RevokeUser(context.Background(), "Jo@Example.com")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("user found:", rev.UserFound)
	for _, a := range rev.Actions {
		fmt.Println(a.Kind, a.Resource, a.Scope, a.Outcome, a.Status)
	}
	// Output:
	// user found: true
	// invite   already_absent 0
	// api_key key-1 proj-1 revoked 200
	// project_membership user-jo proj-1 revoked 200
	// org_membership user-jo  revoked 200
}

func ExampleConnector_CaptureUsage() {
	fake := fakeopenai.New("sk-admin-example")
	defer fake.Close()
	fake.AddUser(fakeopenai.User{ID: "user-jo", Email: "jo@example.com"})
	day := time.Date(2026, 11, 20, 15, 0, 0, 0, time.UTC)
	fake.AddUsage(fakeopenai.Usage{Day: day, UserID: "user-jo", APIKeyID: "key-1", ProjectID: "proj-1", Model: "gpt-4o",
		InputTokens: 1200, OutputTokens: 300, Requests: 4})

	conn, err := openai.New("sk-admin-example", providers.Options{BaseURL: fake.URL()})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Capture first: once the user is removed, their usage is anonymous.
	lockout := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	capt, err := conn.CaptureUsage(context.Background(), "Jo@Example.com", lockout.AddDate(0, 0, -14), lockout)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("user found:", capt.UserFound, capt.UserID)
	for _, b := range capt.Buckets {
		fmt.Println(b.Start.Format(time.DateOnly), b.Model, b.APIKeyID, b.InputTokens, b.OutputTokens, *b.Requests)
	}
	// Output:
	// user found: true user-jo
	// 2026-11-20 gpt-4o key-1 1200 300 4
}
