package sqlq_test

import (
	"fmt"

	"github.com/toktra/toktra/controlplane/store/sqlq"
)

func ExampleParse() {
	q, err := sqlq.Parse(`
-- name: GetOrg
SELECT id, name FROM orgs WHERE id = $1;

-- name: ListOrgs
SELECT id, name FROM orgs ORDER BY name;
`)
	if err != nil {
		panic(err)
	}
	fmt.Println(q.Names())
	fmt.Println(q.MustGet("GetOrg"))
	// Output:
	// [GetOrg ListOrgs]
	// SELECT id, name FROM orgs WHERE id = $1;
}
