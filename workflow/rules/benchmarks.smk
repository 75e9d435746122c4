# Rules for this part of the workflow (see workflow/rules/common.smk for shared helpers).
