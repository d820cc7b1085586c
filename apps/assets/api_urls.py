app_name = "telemetry_api"
urlpatterns = []
