import pytest


@pytest.mark.django_db
def test_admin_redirects_anonymous_to_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_admin_index_renders_for_staff(admin_client):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert b"Site administration" in response.content
